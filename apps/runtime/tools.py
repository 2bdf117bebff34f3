"""The tools an agent may call: a safe calculator, knowledge search and a restricted HTTP GET.

Each tool has a ``ToolSpec`` (what the model sees) and an async executor. ``run_tool`` is the one
entry point the engine uses: it checks the blueprint enabled the tool, validates the arguments
against the tool's JSON Schema, runs it and turns every failure into an error ``ToolOutput`` whose
text starts with ``Error:``, so nothing the tool raises reaches the model as an exception.
"""

from __future__ import annotations

import ast
import asyncio
import codecs
import functools
import hashlib
import html.parser
import ipaddress
import logging
import math
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import jsonschema

from apps.core import adb
from apps.runtime.types import ToolCall, ToolSpec

logger = logging.getLogger(__name__)

ERROR_PREFIX = "Error: "


class ToolError(Exception):
    """A failure the model should be told about in plain words (bad input, refused URL, ...)."""


@dataclass(frozen=True)
class ToolOutput:
    text: str
    error: bool = False


# Calculator

MAX_EXPRESSION_LENGTH = 200
# Results beyond this are almost certainly a mistake (or an attempt to burn CPU and memory).
MAX_MAGNITUDE = 1e100
_MAX_RESULT_DIGITS = 100

_FUNCTIONS: dict[str, Callable[..., int | float]] = {
    "sqrt": math.sqrt,
    "round": round,
    "abs": abs,
    "min": min,
    "max": max,
    "log": math.log,
    "exp": math.exp,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
_ALLOWED_SUMMARY = (
    "only numbers, + - * / // % **, parentheses, percentages and the functions "
    "sqrt, round, abs, min, max, log and exp are allowed"
)

# "4,500" is four thousand five hundred; "max(1, 2)" (with a space) stays a list of arguments.
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])")
_PERCENT_OF = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*%\s*of\b", re.IGNORECASE)
# A % after a number is a percentage unless an operand follows it, which makes it a modulo.
_PERCENT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*%(?!\s*[\w.(])")


class CalculatorError(ToolError):
    pass


class NotAnExpression(CalculatorError):
    """The text is not arithmetic at all (as opposed to arithmetic that cannot be evaluated)."""


def strip_thousands_separators(text: str) -> str:
    return _THOUSANDS.sub(lambda match: match.group(0).replace(",", ""), text)


def _normalise_expression(expression: str) -> str:
    text = expression.strip()
    for symbol, operator in (("×", "*"), ("÷", "/"), ("−", "-"), ("^", "**")):
        text = text.replace(symbol, operator)
    text = strip_thousands_separators(text)
    text = _PERCENT_OF.sub(r"(\1/100)*", text)
    return _PERCENT.sub(r"(\1/100)", text)


def _check_magnitude(value: int | float) -> int | float:
    if isinstance(value, complex):
        raise CalculatorError("the result is not a real number")
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise CalculatorError("the result is too large")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("the result is too large")
    return value


def _power(base: int | float, exponent: int | float) -> int | float:
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero")
    # Estimate the size before computing it: 9 ** 9 ** 9 would otherwise run for minutes.
    if base != 0 and abs(base) != 1 and exponent * math.log10(abs(base)) > _MAX_RESULT_DIGITS:
        raise CalculatorError("the result is too large")
    return base**exponent


def _binary(operator: ast.operator, left: int | float, right: int | float) -> int | float:
    try:
        if isinstance(operator, ast.Add):
            return left + right
        if isinstance(operator, ast.Sub):
            return left - right
        if isinstance(operator, ast.Mult):
            return left * right
        if isinstance(operator, ast.Div):
            return left / right
        if isinstance(operator, ast.FloorDiv):
            return left // right
        if isinstance(operator, ast.Mod):
            return left % right
        if isinstance(operator, ast.Pow):
            return _power(left, right)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("the result is too large") from None
    raise CalculatorError(_ALLOWED_SUMMARY)


def _call(node: ast.Call) -> int | float:
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
        name = node.func.id if isinstance(node.func, ast.Name) else "this"
        raise CalculatorError(f"the function {name!r} is not allowed; {_ALLOWED_SUMMARY}")
    if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
        raise CalculatorError("functions take plain numbers as arguments")
    name = node.func.id
    args = [_evaluate(arg) for arg in node.args]
    expected = {"sqrt": (1, 1), "abs": (1, 1), "exp": (1, 1), "round": (1, 2), "log": (1, 2)}
    low, high = expected.get(name, (1, 50))
    if not low <= len(args) <= high:
        raise CalculatorError(f"{name} takes {low} to {high} arguments, not {len(args)}")
    if name == "round" and len(args) == 2:
        digits = args[1]
        if not isinstance(digits, int) or not 0 <= digits <= 15:
            raise CalculatorError("round takes a whole number of decimal places from 0 to 15")
    if name == "exp" and args[0] > 230:
        raise CalculatorError("the result is too large")
    try:
        if name in ("min", "max"):
            return _FUNCTIONS[name](args) if len(args) > 1 else args[0]
        return _FUNCTIONS[name](*args)
    except ValueError:
        raise CalculatorError(f"{name} is not defined for these values") from None
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("the result is too large") from None


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CalculatorError(_ALLOWED_SUMMARY)
        return _check_magnitude(value)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise CalculatorError(f"unknown name {node.id!r}; {_ALLOWED_SUMMARY}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        operand = _evaluate(node.operand)
        return operand if isinstance(node.op, ast.UAdd) else -operand
    if isinstance(node, ast.BinOp):
        left = _evaluate(node.left)
        right = _evaluate(node.right)
        return _check_magnitude(_binary(node.op, left, right))
    if isinstance(node, ast.Call):
        return _check_magnitude(_call(node))
    raise CalculatorError(_ALLOWED_SUMMARY)


def format_number(value: int | float) -> str:
    """Integers without ``.0``; other values to ten significant digits, which hides float noise
    (0.1 + 0.2 is 0.3) while keeping more precision than any business figure needs."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression without ``eval``: the text is parsed with ``ast`` and only
    numbers, arithmetic operators, parentheses, percentages and a few functions are evaluated."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CalculatorError(
            f"the expression is too long ({len(expression)} characters; "
            f"the limit is {MAX_EXPRESSION_LENGTH})"
        )
    text = _normalise_expression(expression)
    if not text:
        raise NotAnExpression("the expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise NotAnExpression(f"{expression!r} is not a valid arithmetic expression") from None
    try:
        return format_number(_evaluate(tree))
    except RecursionError:
        raise CalculatorError("the expression is nested too deeply") from None


async def calculator(expression: str) -> str:
    # Bounded by the length and magnitude limits, so cheap enough to run on the event loop.
    return calculate(expression)


# Knowledge search


@dataclass(frozen=True)
class KnowledgeDoc:
    title: str
    content: str


@dataclass(frozen=True)
class Passage:
    title: str
    text: str
    score: float


MIN_PASSAGE_CHARS = 120
MAX_PASSAGE_CHARS = 1200
MAX_QUERY_WORDS = 32

# PostgreSQL's English stop words (to_tsvector drops them anyway) plus words that only make a
# sentence a question or a request, which would otherwise match passages at random.
_STOP_WORDS = """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves
    s t don shouldn wasn weren won aren couldn didn doesn hadn hasn haven isn mightn mustn needn
    please tell know want need help get got like may might shall must let lets also explain
    hi hello hey thanks thank ok okay
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(“])")
_KEEP_LINE = re.compile(r"^(?:\s|[-*+>]\s|\||#{1,6}\s|\d+[.)]\s)")

# Each database connection keeps the passages it has searched, as vectors, in a temporary table
# of its own, under a key per set of passages (the same documents answer every message of a
# deployment): a question sends only its words, and PostgreSQL neither receives nor parses the
# passages again. A passage's document title weighs more (A) than its text.
_PASSAGES = "pg_temp.knowledge_passages"
_PASSAGES_KEPT = 64  # sets of passages a connection keeps before it empties its table
_CREATE_SQL = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {_PASSAGES} (
    key text NOT NULL, i integer NOT NULL, v tsvector NOT NULL, PRIMARY KEY (key, i)
)
"""
# Rows already there under the key are the same passages (the key is their content's hash):
# a load interrupted after it committed, loaded again, changes nothing.
_LOAD_SQL = f"""
INSERT INTO {_PASSAGES} (key, i, v)
SELECT %s, t.i, setweight(to_tsvector('english', t.title), 'A') || to_tsvector('english', t.body)
FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(title, body, i)
ON CONFLICT (key, i) DO NOTHING
"""  # noqa: S608 - a fixed table name, values as parameters
_RANK_SQL = f"""
WITH passage AS (
    SELECT i, v FROM {_PASSAGES} WHERE key = %s
),
term AS (
    SELECT DISTINCT quote_literal(lexeme)::tsquery AS q
    FROM unnest(tsvector_to_array(to_tsvector('english', %s))) AS lexeme
),
weighted_term AS (
    SELECT term.q, ln(
        1 + ((SELECT count(*) FROM passage) - count(passage.i) + 0.5) / (count(passage.i) + 0.5)
    ) AS idf
    FROM term LEFT JOIN passage ON passage.v @@ term.q
    GROUP BY term.q
)
SELECT passage.i, sum(weighted_term.idf * ts_rank(passage.v, weighted_term.q)) AS score
FROM passage JOIN weighted_term ON passage.v @@ weighted_term.q
GROUP BY passage.i
ORDER BY score DESC, passage.i
LIMIT %s
"""  # noqa: S608 - a fixed table name, values as parameters


def _reflow(paragraph: str) -> str:
    """Join wrapped prose lines; keep indented (code) and list lines on lines of their own."""
    lines: list[str] = []
    for raw in paragraph.split("\n"):
        line = raw.rstrip()
        if not line.strip():
            continue
        if lines and not _KEEP_LINE.match(line) and not _KEEP_LINE.match(lines[-1]):
            lines[-1] = f"{lines[-1]} {line.strip()}"
        else:
            lines.append(line if _KEEP_LINE.match(line) else line.strip())
    return "\n".join(lines)


def _cap(text: str) -> list[str]:
    if len(text) <= MAX_PASSAGE_CHARS:
        return [text]
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > MAX_PASSAGE_CHARS:
            cut = sentence.rfind(" ", 0, MAX_PASSAGE_CHARS)
            cut = cut if cut > 0 else MAX_PASSAGE_CHARS
            if current:
                chunks.append(current)
                current = ""
            chunks.append(sentence[:cut].rstrip())
            sentence = sentence[cut:].lstrip()
        if current and len(current) + 1 + len(sentence) > MAX_PASSAGE_CHARS:
            chunks.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        chunks.append(current)
    return chunks


def split_passages(document: KnowledgeDoc) -> list[str]:
    """Paragraphs (separated by blank lines), short ones merged into the next, long ones split at
    sentence ends: passages small enough to quote, large enough to carry their context."""
    text = document.content.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = [_reflow(p) for p in re.split(r"\n[ \t]*\n", text)]
    paragraphs = [p for p in paragraphs if p]
    merged: list[str] = []
    pending = ""
    for paragraph in paragraphs:
        pending = f"{pending}\n\n{paragraph}" if pending else paragraph
        if len(pending) >= MIN_PASSAGE_CHARS:
            merged.append(pending)
            pending = ""
    if pending:
        if merged and len(merged[-1]) + len(pending) <= MAX_PASSAGE_CHARS:
            merged[-1] = f"{merged[-1]}\n\n{pending}"
        else:
            merged.append(pending)
    return [chunk for paragraph in merged for chunk in _cap(paragraph)]


@functools.lru_cache(maxsize=2048)
def _passages_of(document: KnowledgeDoc) -> tuple[str, ...]:
    """``split_passages``, once per document (the same documents answer every message)."""
    return tuple(split_passages(document))


def query_words(text: str) -> list[str]:
    """The meaningful words of a question, lower-cased, in order, without repeats."""
    words: list[str] = []
    for word in re.findall(r"[^\W_]+", text.lower()):
        if word not in STOP_WORDS and word not in words and (len(word) > 1 or word.isdigit()):
            words.append(word)
    return words[:MAX_QUERY_WORDS]


@functools.lru_cache(maxsize=256)
def _passages_key(passages: tuple[tuple[str, str], ...]) -> str:
    """What names a set of passages in a connection's table (their content, hashed)."""
    digest = hashlib.sha256()
    for title, text in passages:
        digest.update(f"{len(title)}:{title}{len(text)}:{text}".encode())
    return digest.hexdigest()


def _ranker(
    passages: tuple[tuple[str, str], ...], words: str, limit: int
) -> Callable[[Any], Awaitable[list[Any]]]:
    key = _passages_key(passages)

    async def rank(conn: Any) -> list[Any]:
        kept: set[str] | None = getattr(conn, "_knowledge_keys", None)
        if kept is None:
            await conn.execute(_CREATE_SQL)
            kept = conn._knowledge_keys = set()
        if key not in kept:
            if len(kept) >= _PASSAGES_KEPT:
                kept.clear()  # first: a set is never thought kept once its rows may be gone
                await conn.execute(f"TRUNCATE {_PASSAGES}")
            titles, bodies = [title for title, _ in passages], [text for _, text in passages]
            await conn.execute(_LOAD_SQL, [key, titles, bodies])
            kept.add(key)
        cursor = await conn.execute(_RANK_SQL, [key, words, limit])
        return list(await cursor.fetchall())

    return rank


async def knowledge_search(
    query: str, documents: Sequence[KnowledgeDoc], limit: int = 3
) -> list[Passage]:
    """The passages of ``documents`` that best match ``query``, best first.

    Ranked by PostgreSQL full-text search over the passages' vectors, which the connection keeps
    in a temporary table of its own (loaded with the first question on a set of passages; no
    tenant's table or schema is involved). Any of the question's meaningful words may match:
    a natural-language question rarely has all its words in one passage, which is what
    websearch_to_tsquery (AND) would require. Each word's ts_rank is weighted by its inverse
    document frequency over the passages (as in BM25), so "connect" outweighs a word found in
    every passage, and a passage's document title counts more than its body (weight A).
    """
    words = query_words(query)
    passages = tuple((doc.title, text) for doc in documents for text in _passages_of(doc))
    if not words or not passages or limit < 1:
        return []
    # From the event loop, on one of its connections: the search reads no tenant's table, so it
    # needs neither the caller's connection, its transaction nor any schema.
    rows = await adb.run(_ranker(passages, " ".join(words), limit), retry=True)
    return [
        Passage(title=passages[i - 1][0], text=passages[i - 1][1], score=float(rank))
        for i, rank in rows
    ]


_PASSAGE_HEADER = re.compile(r"^\[(\d+)\] (.+)$", re.MULTILINE)


def format_passages(passages: Sequence[Passage], documents: Sequence[KnowledgeDoc] = ()) -> str:
    """The tool's output for the model: numbered passages with their document titles."""
    if not passages:
        titles = "; ".join(dict.fromkeys(doc.title for doc in documents))
        text = "No passage in the knowledge documents matches this question."
        return f"{text} Documents available: {titles}." if titles else text
    blocks = ["Passages from the knowledge documents, best match first:"]
    for number, passage in enumerate(passages, start=1):
        # A passage line that looks like a header would be read as the start of another passage.
        body = re.sub(r"^(\[\d+\] )", r"\\\1", passage.text, flags=re.MULTILINE)
        blocks.append(f"[{number}] {passage.title}\n{body}")
    return "\n\n".join(blocks)


def parse_passages(output: str) -> list[tuple[str, str]]:
    """(title, text) pairs back from ``format_passages`` output."""
    headers = list(_PASSAGE_HEADER.finditer(output))
    result = []
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(output)
        text = re.sub(r"^\\(\[\d+\] )", r"\1", output[header.end() : end].strip(), flags=re.M)
        result.append((header.group(2).strip(), text))
    return result


# HTTP GET

MAX_REDIRECTS = 3
_TEXT_TYPES = re.compile(
    r"^(text/[\w.+-]+|application/(json|xml|xhtml\+xml|javascript|ecmascript|x-yaml|yaml|"
    r"ld\+json|rss\+xml|atom\+xml|csv|[\w.-]+\+json|[\w.-]+\+xml))$"
)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle takes ~70 ms of CPU; every client shares one context instead.
    return httpx.create_ssl_context()


def host_allowed(host: str, allowed_hosts: Collection[str]) -> bool:
    """Exact host names, or ``*.example.com`` for any subdomain of example.com (not itself)."""
    host = host.lower().rstrip(".")
    for entry in allowed_hosts:
        pattern = entry.strip().lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def _address_refusal(address: str, allow_private: bool) -> str | None:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    embedded = []
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
        if ip.teredo:
            embedded.append(ip.teredo[1])
    for candidate in (ip, *embedded):
        # Never reachable on purpose, even with private addresses allowed: link-local holds the
        # cloud metadata service (169.254.169.254).
        if candidate.is_link_local or candidate.is_multicast or candidate.is_unspecified:
            return f"{address} is a link-local, multicast or unspecified address"
        # is_global is false for loopback, private, shared (CGNAT) and reserved ranges alike.
        if not allow_private and not candidate.is_global:
            return f"{address} is a private, loopback or reserved address"
    return None


async def _vetted_addresses(host: str, port: int, allow_private: bool) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError:
        raise ToolError(f"the host {host} could not be resolved") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ToolError(f"the host {host} could not be resolved")
    # Every address, not just the one we will use: a name that also resolves to an internal
    # address is refused as a whole.
    for address in addresses:
        refusal = _address_refusal(address, allow_private)
        if refusal:
            raise ToolError(f"{host} resolves to {refusal}, which is not allowed")
    return addresses


class _TextExtractor(html.parser.HTMLParser):
    """Visible text of an HTML page: the model needs the words, not the markup."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)

    def text(self) -> str:
        joined = re.sub(r"[ \t\r\f\v]+", " ", "".join(self.parts))
        return re.sub(r"\s*\n\s*", "\n", joined).strip()


@dataclass
class _Fetched:
    url: str
    status: int
    content_type: str
    body: str
    truncated: bool


def _ip_url(scheme: str, address: str, port: int, path: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{scheme}://{host}:{port}{path}"


async def _fetch_once(
    client: httpx.AsyncClient, url: str, addresses: list[str], max_bytes: int
) -> _Fetched | str:
    """One request to ``url`` over a vetted address; the redirect target when it redirects."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    default_port = port == (443 if parts.scheme == "https" else 80)
    host_header = host if default_port else f"{host}:{port}"
    if ":" in host:
        host_header = f"[{host}]" if default_port else f"[{host}]:{port}"
    last_error: Exception | None = None
    for address in addresses:
        request = client.build_request(
            "GET",
            # The vetted address itself, so a second DNS answer (rebinding) cannot redirect the
            # connection; the Host header and TLS SNI/certificate check still use the name.
            _ip_url(parts.scheme, address, port, path),
            headers={"Host": host_header, "Accept-Encoding": "identity"},
            extensions={"sni_hostname": host},
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectError as error:
            last_error = error
            continue
        try:
            if response.is_redirect:
                location = response.headers.get("location", "")
                if not location:
                    raise ToolError(f"{url} redirected without a location")
                return urljoin(url, location)
            if response.status_code >= 400:
                raise ToolError(f"{url} answered HTTP {response.status_code}")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if not _TEXT_TYPES.match(content_type):
                raise ToolError(
                    f"{url} returned {content_type or 'content of no declared type'}, "
                    "and only text can be read"
                )
            encoding = response.headers.get("content-encoding", "identity").lower()
            if encoding not in ("", "identity"):
                raise ToolError(f"{url} sent compressed content ({encoding}), which is refused")
            decoder = codecs.getincrementaldecoder(_charset(response))(errors="replace")
            received = 0
            pieces: list[str] = []
            truncated = False
            async for chunk in response.aiter_raw():
                room = max_bytes - received
                if len(chunk) > room:
                    pieces.append(decoder.decode(chunk[:room]))
                    truncated = True
                    break
                received += len(chunk)
                pieces.append(decoder.decode(chunk))
            if not truncated:
                pieces.append(decoder.decode(b"", final=True))
            return _Fetched(url, response.status_code, content_type, "".join(pieces), truncated)
        finally:
            await response.aclose()
    raise ToolError(f"could not connect to {host}") from last_error


def _charset(response: httpx.Response) -> str:
    charset = response.charset_encoding or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        return "utf-8"
    return charset


def _vet_url(url: str, allowed_hosts: Collection[str]) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ToolError(f"{url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ToolError("only http and https URLs can be fetched")
    if parts.username or parts.password:
        raise ToolError("URLs with credentials are refused")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ToolError(f"{url!r} has no host")
    if not host_allowed(host, allowed_hosts):
        raise ToolError(f"the host {host} is not in this deployment's list of allowed hosts")
    return host, port or (443 if parts.scheme == "https" else 80)


async def http_get(
    url: str,
    *,
    allowed_hosts: Collection[str],
    allow_private: bool = False,
    timeout: float = 5.0,
    max_bytes: int = 256_000,
) -> str:
    """Fetch a text document from an allowlisted host; raise ``ToolError`` for anything refused.

    Every hop (at most ``MAX_REDIRECTS`` redirects) is checked again: scheme, allowlist, and every
    address the host resolves to. The connection goes to the address that was checked.
    """
    try:
        async with asyncio.timeout(timeout):
            current = url
            for _hop in range(MAX_REDIRECTS + 1):
                host, port = _vet_url(current, allowed_hosts)
                addresses = await _vetted_addresses(host, port, allow_private)
                # A client per hop: a pooled connection to the same address, opened (and its
                # certificate checked) for another host name, must not carry this request.
                async with httpx.AsyncClient(
                    follow_redirects=False, timeout=timeout, trust_env=False, verify=_tls_context()
                ) as client:
                    result = await _fetch_once(client, current, addresses, max_bytes)
                if isinstance(result, _Fetched):
                    return _describe(result, max_bytes)
                current = result
            raise ToolError(f"{url} redirected more than {MAX_REDIRECTS} times")
    except TimeoutError:
        raise ToolError(f"{url} did not answer within {timeout:g} seconds") from None
    except httpx.HTTPError as error:
        raise ToolError(f"fetching {url} failed ({type(error).__name__})") from None


def _describe(fetched: _Fetched, max_bytes: int) -> str:
    body = fetched.body
    if fetched.content_type in ("text/html", "application/xhtml+xml"):
        extractor = _TextExtractor()
        extractor.feed(body)
        extractor.close()
        body = extractor.text()
    header = f"HTTP {fetched.status} from {fetched.url} ({fetched.content_type})"
    note = f"\n\n[Truncated: only the first {max_bytes:,} bytes were read.]"
    return f"{header}\n\n{body}{note if fetched.truncated else ''}"


# Specs and dispatch

CALCULATOR = ToolSpec(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression exactly. Supports + - * / // % ** and parentheses, "
        "percentages ('12% of 4500', '5%' is 0.05) and sqrt, round, abs, min, max, log, exp. "
        "Use it for every calculation instead of working numbers out yourself."
    ),
    parameters={
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_EXPRESSION_LENGTH,
                "description": "For example '(1200 - 950) / 950 * 100' or '12% of 4500'.",
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
)
KNOWLEDGE_SEARCH = ToolSpec(
    name="knowledge_search",
    description=(
        "Search this agent's knowledge documents (the blueprint's guides and the documents the "
        "organisation uploaded). Returns the best matching passages with their document titles."
    ),
    parameters={
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": 500,
                "description": "The question or keywords to look up.",
            },
            "limit": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
        },
        "required": ["query"],
        "additionalProperties": False,
    },
)
HTTP_GET = ToolSpec(
    name="http_get",
    description=(
        "Fetch a web page or API response (text only) from a host this deployment allows. "
        "Long responses are truncated."
    ),
    parameters={
        "type": "object",
        "properties": {
            "url": {
                "type": "string",
                "minLength": 1,
                "maxLength": 2000,
                "description": "An http or https URL on an allowed host.",
            }
        },
        "required": ["url"],
        "additionalProperties": False,
    },
)
TOOL_SPECS: dict[str, ToolSpec] = {
    spec.name: spec for spec in (CALCULATOR, KNOWLEDGE_SEARCH, HTTP_GET)
}


def tool_specs(names: Iterable[str]) -> tuple[ToolSpec, ...]:
    """The specs of the named tools, in the order given; unknown names are ignored."""
    return tuple(TOOL_SPECS[name] for name in names if name in TOOL_SPECS)


@dataclass(frozen=True)
class ToolContext:
    """What a tool may use in one deployment: its documents, its allowlist, its enabled tools."""

    enabled: frozenset[str]
    documents: tuple[KnowledgeDoc, ...] = ()
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    allow_private: bool = False
    http_timeout: float = 5.0
    http_max_bytes: int = 256_000


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(TOOL_SPECS[name].parameters)


def _validation_message(spec: ToolSpec, arguments: Any) -> str | None:
    validator = _validator(spec.name)
    errors = sorted(validator.iter_errors(arguments), key=lambda error: list(error.path))
    if not errors:
        return None
    error = errors[0]
    where = ".".join(str(part) for part in error.path)
    return f"invalid arguments for {spec.name}: {f'{where}: ' if where else ''}{error.message}"


async def _execute(call: ToolCall, context: ToolContext) -> str:
    arguments = call.arguments
    if call.name == "calculator":
        expression = arguments["expression"]
        return await calculator(expression)
    if call.name == "knowledge_search":
        passages = await knowledge_search(
            arguments["query"], context.documents, limit=arguments.get("limit", 3)
        )
        return format_passages(passages, context.documents)
    if call.name == "http_get":
        return await http_get(
            arguments["url"],
            allowed_hosts=context.allowed_hosts,
            allow_private=context.allow_private,
            timeout=context.http_timeout,
            max_bytes=context.http_max_bytes,
        )
    raise ToolError(f"there is no tool named {call.name!r}")


async def run_tool(call: ToolCall, context: ToolContext) -> ToolOutput:
    """Run one tool call for the model. Never raises: failures come back as error output."""
    spec = TOOL_SPECS.get(call.name)
    if spec is None or call.name not in context.enabled:
        return ToolOutput(
            f"{ERROR_PREFIX}the tool {call.name!r} is not available to this agent.", True
        )
    problem = _validation_message(spec, call.arguments)
    if problem:
        return ToolOutput(f"{ERROR_PREFIX}{problem}.", error=True)
    try:
        return ToolOutput(await _execute(call, context))
    except ToolError as error:
        return ToolOutput(f"{ERROR_PREFIX}{error}.", error=True)
    except Exception:
        logger.exception("tool %s failed", call.name)
        return ToolOutput(f"{ERROR_PREFIX}the {call.name} tool failed unexpectedly.", error=True)
