"""Tools: the safe calculator, knowledge search on PostgreSQL, the restricted HTTP GET, and the
dispatch that validates arguments and never lets an exception reach the model."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from asgiref.sync import sync_to_async
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import connection

from apps.core import adb
from apps.runtime import tools
from apps.runtime.tools import (
    CalculatorError,
    KnowledgeDoc,
    Passage,
    ToolContext,
    ToolError,
    calculate,
    format_passages,
    host_allowed,
    http_get,
    knowledge_search,
    parse_passages,
    run_tool,
    split_passages,
    tool_specs,
)
from apps.runtime.types import ToolCall

BLUEPRINTS = Path(__file__).resolve().parents[2] / "blueprints"


def _knowledge(slug: str) -> tuple[KnowledgeDoc, ...]:
    version = yaml.safe_load((BLUEPRINTS / f"{slug}.yaml").read_text())["version"]
    return tuple(KnowledgeDoc(doc["title"], doc["content"]) for doc in version["knowledge"])


# Calculator


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", "14"),
        ("(1200-950)/950*100", "26.31578947"),
        ("12% of 4500", "540"),
        ("12% of 4,500", "540"),
        ("15 % of 2400", "360"),
        ("5%", "0.05"),
        ("4500 * 12%", "540"),
        ("1000 * (1 + 5%) ** 3", "1157.625"),
        ("10 % 3", "1"),
        ("7 // 2", "3"),
        ("2 ** 10", "1024"),
        ("2^10", "1024"),
        ("3 × 4 ÷ 2", "6"),
        ("-3 + +2", "-1"),
        ("0.1 + 0.2", "0.3"),
        ("1/3", "0.3333333333"),
        ("sqrt(16)", "4"),
        ("round(3.14159, 2)", "3.14"),
        ("round(2.6)", "3"),
        ("abs(-5)", "5"),
        ("min(3, 1, 2) + max(3, 1, 2)", "4"),
        ("log(100, 10)", "2"),
        ("exp(0)", "1"),
        ("2 * pi", "6.283185307"),
        ("10 ** 100", "1" + "0" * 100),
        ("2 ** -1", "0.5"),
    ],
)
def test_calculator_evaluates_arithmetic_and_percentages(expression, expected):
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("(1).__class__", "only numbers"),
        ("lambda: 1", "only numbers"),
        ("open('/etc/passwd')", "'open' is not allowed"),
        ("print(1)", "'print' is not allowed"),
        ("[1, 2]", "only numbers"),
        ("'a' * 3", "only numbers"),
        ("1 if 1 else 2", "only numbers"),
        ("1 < 2", "only numbers"),
        ("True + 1", "only numbers"),
        ("1j * 2", "only numbers"),
        ("max(*[1, 2])", "plain numbers"),
        ("round(1, ndigits=2)", "plain numbers"),
        ("round(1, 2.5)", "whole number of decimal places"),
        ("9**9**9", "too large"),
        ("10 ** 101", "too large"),
        ("0.5 ** -400", "too large"),
        ("exp(1000)", "too large"),
        ("1e400", "too large"),
        ("9" * 150, "too large"),
        ("1/0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("7 // 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("sqrt(-1)", "not defined"),
        ("log(0)", "not defined"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 +", "not a valid arithmetic expression"),
        ("", "empty"),
        ("1" + "+1" * 100, "too long"),
    ],
)
def test_calculator_refuses_anything_but_bounded_arithmetic(expression, message):
    with pytest.raises(CalculatorError, match=message):
        calculate(expression)


def test_a_huge_exponent_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(CalculatorError):
        calculate("9**9**9**9")
    assert time.monotonic() - started < 0.1


# Knowledge search


def test_documents_are_split_into_passages_of_paragraphs():
    document = KnowledgeDoc(
        "Guide",
        "Short one.\n\nAlso short.\n\n"
        + ("A long paragraph that keeps going on about one thing. " * 3).strip()
        + "\n\nCode example follows:\n    SELECT 1\n    FROM t;\nDone with it, and wrapped\nover two"
        " lines, long enough to be a passage of its own rather than part of the one before.",
    )

    passages = split_passages(document)

    assert passages[0].startswith("Short one.\n\nAlso short.\n\nA long paragraph")
    assert passages[1] == (
        "Code example follows:\n    SELECT 1\n    FROM t;\nDone with it, and wrapped over two lines, "
        "long enough to be a passage of its own rather than part of the one before."
    )
    assert len(passages) == 2


def test_a_long_paragraph_is_capped_at_sentence_ends():
    sentence = "This sentence is about forty characters. "
    passages = split_passages(KnowledgeDoc("Long", sentence * 100))

    assert len(passages) > 1
    assert all(len(p) <= tools.MAX_PASSAGE_CHARS for p in passages)
    assert all(p.endswith("characters.") for p in passages)


def test_passages_survive_the_round_trip_through_the_tool_output():
    passages = [
        Passage("VPN connection problems", "Quit the client.\n[2] looks like a header", 1.0),
        Passage("Printer problems", "Restart the printer.", 0.5),
    ]

    output = format_passages(passages)

    assert output.splitlines()[2] == "[1] VPN connection problems"
    assert parse_passages(output) == [
        ("VPN connection problems", "Quit the client.\n[2] looks like a header"),
        ("Printer problems", "Restart the printer."),
    ]


def test_no_match_names_the_documents_there_are():
    output = format_passages([], [KnowledgeDoc("A", "x"), KnowledgeDoc("B", "y")])

    assert output == (
        "No passage in the knowledge documents matches this question. Documents available: A; B."
    )
    assert parse_passages(output) == []


@pytest.mark.usefixtures("committed")
async def test_knowledge_search_finds_the_vpn_guide_for_a_vpn_question():
    passages = await knowledge_search("how do I connect to the VPN", _knowledge("it-helpdesk"))

    assert [p.title for p in passages] == ["VPN connection problems"] * 3
    assert "VPN will not connect" in passages[0].text
    assert passages[0].score >= passages[1].score >= passages[2].score > 0


@pytest.mark.usefixtures("committed")
@pytest.mark.parametrize(
    ("slug", "question", "title", "phrase"),
    [
        (
            "it-helpdesk",
            "My print job is stuck in the queue",
            "Printer problems",
            "Print job stuck",
        ),
        ("it-helpdesk", "I lost my laptop on the train", "Security incidents", "Lost or stolen"),
        ("customer-support-assistant", "How long do I have to return an item?", "Returns", "30"),
        ("customer-support-assistant", "When will I get my refund?", "Returns", "Refund timing"),
        ("sql-helper", "How do window functions rank rows?", "Window functions", "ROW_NUMBER"),
        ("hr-policy-qa", "How many days of annual leave?", "Annual leave", "28 days"),
    ],
)
async def test_knowledge_search_ranks_the_answering_passage_first(slug, question, title, phrase):
    passages = await knowledge_search(question, _knowledge(slug), limit=1)

    assert len(passages) == 1
    assert passages[0].title.startswith(title)
    assert phrase in passages[0].text


@pytest.mark.usefixtures("committed")
async def test_knowledge_search_is_deterministic_and_honours_the_limit():
    documents = _knowledge("data-analyst")

    first = await knowledge_search("median versus mean for skewed data", documents, limit=5)
    second = await knowledge_search("median versus mean for skewed data", documents, limit=5)

    assert first == second
    assert len(first) == 5


@pytest.mark.usefixtures("committed")
async def test_knowledge_search_without_a_match_or_meaningful_words_finds_nothing():
    documents = _knowledge("it-helpdesk")

    assert await knowledge_search("zebra giraffe", documents) == []
    assert await knowledge_search("how do I do it?", documents) == []
    assert await knowledge_search("vpn", []) == []


@pytest.mark.usefixtures("committed")
async def test_knowledge_search_is_not_confused_by_query_syntax():
    documents = _knowledge("it-helpdesk")

    passages = await knowledge_search("VPN & !(printer) | 'wifi':* <-> \\ ; DROP TABLE", documents)

    assert passages
    assert passages[0].title in {"VPN connection problems", "Printer problems"}


def _connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.usefixtures("committed")
async def test_knowledge_search_keeps_one_connection_of_its_event_loop_and_closes_it():
    documents = _knowledge("it-helpdesk")

    before = await sync_to_async(_connections)()
    found = [await knowledge_search("printer offline", documents) for _ in range(6)]
    during = await sync_to_async(_connections)()
    await adb.close()
    # A closed connection's server process takes a moment to leave pg_stat_activity.
    deadline = time.monotonic() + 5
    while (after := await sync_to_async(_connections)()) > before:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)

    assert all(passages == found[0] for passages in found)
    assert during <= before + 1
    assert after <= before
    # A new connection knows none of the passages yet: the same answer all the same.
    assert await knowledge_search("printer offline", documents) == found[0]
    await adb.close()


@pytest.mark.usefixtures("committed")
async def test_knowledge_search_reads_an_edited_document_as_edited():
    original = (KnowledgeDoc("Office guide", "The printer on floor two is named Heron."),)
    edited = (KnowledgeDoc("Office guide", "The printer on floor two is named Falcon."),)

    first = await knowledge_search("name of the printer on floor two", original)
    second = await knowledge_search("name of the printer on floor two", edited)
    third = await knowledge_search("falcon", original)
    await adb.close()

    assert [p.text for p in first] == ["The printer on floor two is named Heron."]
    assert [p.text for p in second] == ["The printer on floor two is named Falcon."]
    assert third == []


@pytest.mark.usefixtures("committed")
async def test_knowledge_search_survives_a_connection_the_server_dropped():
    documents = _knowledge("it-helpdesk")
    first = await knowledge_search("printer offline", documents)

    async def backend_pid(conn):
        return conn.info.backend_pid

    pid = await adb.run(backend_pid)

    def terminate():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])

    await sync_to_async(terminate)()

    assert await knowledge_search("printer offline", documents) == first
    await adb.close()


@pytest.mark.usefixtures("committed")
async def test_knowledge_search_loads_passages_again_without_harm():
    # A load that committed but was interrupted before the connection noted it: loaded again.
    documents = _knowledge("it-helpdesk")
    first = await knowledge_search("printer offline", documents)

    async def forget(conn):
        conn._knowledge_keys.clear()

    await adb.run(forget)

    assert await knowledge_search("printer offline", documents) == first
    await adb.close()


# HTTP GET


class _Handler(BaseHTTPRequestHandler):
    release: threading.Event

    def log_message(self, *args):  # keep the test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        port = self.server.server_port  # type: ignore[attr-defined]  # an HTTPServer
        if self.path == "/text":
            self._send(200, b"plain text body", "text/plain; charset=utf-8")
        elif self.path == "/host":
            self._send(200, self.headers["Host"].encode(), "text/plain")
        elif self.path == "/html":
            page = b"<html><head><style>p{}</style></head><body><p>Hello</p><script>x()</script></body>"
            self._send(200, page, "text/html")
        elif self.path == "/json":
            self._send(200, b'{"ok": true}', "application/json")
        elif self.path == "/big":
            self._send(200, b"x" * 1_000_000, "text/plain")
        elif self.path == "/png":
            self._send(200, b"\x89PNG\r\n", "image/png")
        elif self.path == "/missing":
            self._send(404, b"nope", "text/plain")
        elif self.path == "/gzip":
            self._send(200, b"\x1f\x8b", "text/plain", Content_Encoding="gzip")
        elif self.path == "/hang":
            self.release.wait(10)
        elif self.path == "/to-text":
            self._send(302, b"", "text/plain", Location="/text")
        elif self.path == "/to-localhost":
            self._send(302, b"", "text/plain", Location=f"http://localhost:{port}/host")
        elif self.path == "/to-elsewhere":
            self._send(302, b"", "text/plain", Location="http://elsewhere.example/")
        elif self.path == "/loop":
            self._send(302, b"", "text/plain", Location="/loop")
        else:
            self._send(404, b"", "text/plain")


def _serve(wrap: Callable[[ThreadingHTTPServer], None] | None = None) -> Iterator[int]:
    release = threading.Event()
    handler = type("Handler", (_Handler,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if wrap:
        wrap(server)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def web() -> Iterator[str]:
    """A plain HTTP server on the loopback interface; yields its base URL."""
    for port in _serve():
        yield f"http://127.0.0.1:{port}"


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_web(tmp_path, monkeypatch) -> Iterator[Callable[[str], int]]:
    """Start HTTPS servers with a certificate for a given name, trusted by http_get."""
    servers: list[Iterator[int]] = []
    client = ssl.create_default_context()
    monkeypatch.setattr(tools, "_tls_context", lambda: client)

    def start(name: str) -> int:
        cert_path, key_path = _certificate(tmp_path, name)
        client.load_verify_locations(cafile=cert_path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)

        def wrap(server: ThreadingHTTPServer) -> None:
            server.socket = context.wrap_socket(server.socket, server_side=True)

        servers.append(_serve(wrap))
        return next(servers[-1])

    yield start
    for server in servers:
        next(server, None)


LOOPBACK = frozenset({"127.0.0.1"})


async def test_http_get_refuses_a_host_that_is_not_allowlisted(web):
    with pytest.raises(ToolError, match="not in this deployment's list of allowed hosts"):
        await http_get(f"{web}/text", allowed_hosts={"example.com"}, allow_private=True)


async def test_http_get_refuses_loopback_unless_private_addresses_are_allowed(web):
    with pytest.raises(ToolError, match="private, loopback or reserved"):
        await http_get(f"{web}/text", allowed_hosts=LOOPBACK)

    body = await http_get(f"{web}/text", allowed_hosts=LOOPBACK, allow_private=True)

    assert body == f"HTTP 200 from {web}/text (text/plain)\n\nplain text body"


async def test_http_get_checks_the_addresses_a_name_resolves_to(web):
    url = web.replace("127.0.0.1", "localhost") + "/host"

    with pytest.raises(ToolError, match="localhost resolves to"):
        await http_get(url, allowed_hosts={"localhost"})
    body = await http_get(url, allowed_hosts={"localhost"}, allow_private=True)

    # The connection went to the vetted address, and the server still saw the name it was asked.
    assert body.endswith(f"\n\nlocalhost:{web.rsplit(':', 1)[1]}")


async def test_https_goes_to_the_vetted_address_and_checks_the_certificate_for_the_name(tls_web):
    port = tls_web("localhost")

    body = await http_get(
        f"https://localhost:{port}/host", allowed_hosts={"localhost"}, allow_private=True
    )

    assert body.endswith(f"\n\nlocalhost:{port}")


async def test_https_refuses_a_certificate_for_another_name(tls_web):
    port = tls_web("other.example")

    with pytest.raises(ToolError, match="could not connect to localhost"):
        await http_get(
            f"https://localhost:{port}/text", allowed_hosts={"localhost"}, allow_private=True
        )


async def test_http_get_truncates_a_large_body_at_the_size_limit(web):
    body = await http_get(f"{web}/big", allowed_hosts=LOOPBACK, allow_private=True, max_bytes=1000)

    header, text = body.split("\n\n", 1)
    assert text.startswith("x" * 1000)
    assert not text.startswith("x" * 1001)
    assert text.endswith("[Truncated: only the first 1,000 bytes were read.]")


async def test_http_get_gives_up_on_a_server_that_does_not_answer(web):
    started = time.monotonic()

    with pytest.raises(ToolError, match="did not answer within 0.5 seconds"):
        await http_get(f"{web}/hang", allowed_hosts=LOOPBACK, allow_private=True, timeout=0.5)

    assert time.monotonic() - started < 3


async def test_http_get_follows_redirects_only_to_allowed_hosts(web):
    followed = await http_get(f"{web}/to-text", allowed_hosts=LOOPBACK, allow_private=True)
    assert followed.endswith("plain text body")

    with pytest.raises(ToolError, match="elsewhere.example is not in this deployment's list"):
        await http_get(f"{web}/to-elsewhere", allowed_hosts=LOOPBACK, allow_private=True)
    with pytest.raises(ToolError, match="localhost is not in this deployment's list"):
        await http_get(f"{web}/to-localhost", allowed_hosts=LOOPBACK, allow_private=True)
    with pytest.raises(ToolError, match="redirected more than 3 times"):
        await http_get(f"{web}/loop", allowed_hosts=LOOPBACK, allow_private=True)


async def test_http_get_reads_text_only(web):
    with pytest.raises(ToolError, match="returned image/png, and only text can be read"):
        await http_get(f"{web}/png", allowed_hosts=LOOPBACK, allow_private=True)
    with pytest.raises(ToolError, match="compressed content"):
        await http_get(f"{web}/gzip", allowed_hosts=LOOPBACK, allow_private=True)
    with pytest.raises(ToolError, match="answered HTTP 404"):
        await http_get(f"{web}/missing", allowed_hosts=LOOPBACK, allow_private=True)

    page = await http_get(f"{web}/html", allowed_hosts=LOOPBACK, allow_private=True)
    data = await http_get(f"{web}/json", allowed_hosts=LOOPBACK, allow_private=True)

    assert page.endswith("\n\nHello")
    assert data.endswith('\n\n{"ok": true}')


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/file", "file:///etc/passwd", "http://user:pw@127.0.0.1/", "http:///nohost"],
)
async def test_http_get_refuses_other_schemes_credentials_and_missing_hosts(url):
    with pytest.raises(ToolError):
        await http_get(url, allowed_hosts=LOOPBACK, allow_private=True)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("example.com", True),
        ("EXAMPLE.com.", True),
        ("api.example.com", False),
        ("docs.example.org", True),
        ("a.b.example.org", True),
        ("example.org", False),
        ("badexample.org", False),
        ("example.com.evil.net", False),
    ],
)
def test_allowlist_entries_are_exact_hosts_or_subdomain_wildcards(host, allowed):
    assert host_allowed(host, ["example.com", "*.example.org"]) is allowed


@pytest.mark.parametrize(
    ("address", "allow_private", "refused"),
    [
        ("93.184.216.34", False, False),
        ("10.0.0.8", False, True),
        ("10.0.0.8", True, False),
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("::ffff:127.0.0.1", False, True),
        ("100.64.0.1", False, True),
        ("fd00::1", True, False),
        ("169.254.169.254", True, True),
        ("fe80::1%eth0", True, True),
        ("224.0.0.1", True, True),
        ("0.0.0.0", True, True),  # noqa: S104 - an address to vet, not one to bind
    ],
)
def test_addresses_are_vetted(address, allow_private, refused):
    assert (tools._address_refusal(address, allow_private) is not None) is refused


# Dispatch


def test_tool_specs_follow_the_blueprints_tool_names():
    specs = tool_specs(["knowledge_search", "calculator", "unknown"])

    assert [spec.name for spec in specs] == ["knowledge_search", "calculator"]
    assert specs[1].parameters["required"] == ["expression"]


async def test_run_tool_calculates():
    context = ToolContext(enabled=frozenset({"calculator"}))

    output = await run_tool(ToolCall("c1", "calculator", {"expression": "12% of 4500"}), context)

    assert (output.text, output.error) == ("540", False)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (ToolCall("c1", "http_get", {"url": "http://example.com"}), "not available to this agent"),
        (ToolCall("c1", "shell", {"command": "ls"}), "'shell' is not available"),
        (ToolCall("c1", "calculator", {}), "'expression' is a required property"),
        (ToolCall("c1", "calculator", {"expression": 42}), "expression: 42 is not of type"),
        (ToolCall("c1", "calculator", {"expression": "1", "x": 1}), "Additional properties"),
        (ToolCall("c1", "calculator", {"expression": "1" * 201}), "is too long"),
        (ToolCall("c1", "calculator", {"expression": "1/0"}), "division by zero"),
    ],
)
async def test_run_tool_turns_every_problem_into_an_error_output(call, message):
    context = ToolContext(enabled=frozenset({"calculator", "knowledge_search"}))

    output = await run_tool(call, context)

    assert output.error
    assert output.text.startswith("Error: ")
    assert message in output.text


async def test_an_unexpected_failure_is_reported_without_its_details(monkeypatch):
    async def broken(expression: str) -> str:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(tools, "calculator", broken)
    context = ToolContext(enabled=frozenset({"calculator"}))

    output = await run_tool(ToolCall("c1", "calculator", {"expression": "1"}), context)

    assert output == tools.ToolOutput("Error: the calculator tool failed unexpectedly.", True)


async def test_run_tool_fetches_from_the_deployments_allowlist(web):
    context = ToolContext(
        enabled=frozenset({"http_get"}), allowed_hosts=LOOPBACK, allow_private=True
    )

    fetched = await run_tool(ToolCall("c1", "http_get", {"url": f"{web}/text"}), context)
    refused = await run_tool(
        ToolCall("c2", "http_get", {"url": f"{web}/text"}),
        ToolContext(enabled=frozenset({"http_get"}), allowed_hosts=LOOPBACK),
    )

    assert not fetched.error
    assert fetched.text.endswith("plain text body")
    assert refused.error
    assert "private, loopback or reserved" in refused.text


@pytest.mark.usefixtures("committed")
async def test_run_tool_searches_the_deployments_documents():
    context = ToolContext(
        enabled=frozenset({"knowledge_search"}), documents=_knowledge("it-helpdesk")
    )

    output = await run_tool(
        ToolCall("c1", "knowledge_search", {"query": "printer offline", "limit": 2}), context
    )

    assert not output.error
    assert output.text.startswith("Passages from the knowledge documents, best match first:")
    assert [title for title, _ in parse_passages(output.text)] == ["Printer problems"] * 2
