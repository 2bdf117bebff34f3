"""Guardrails: PII redaction (whole and streamed), the input length limit, blocked topics and the
output checks."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from apps.runtime import guardrails
from apps.runtime.guardrails import (
    PII_KINDS,
    GuardrailConfig,
    OutputContext,
    OutputVerdict,
    StreamingRedactor,
    check_input,
    check_output,
    luhn_valid,
    redact,
    register_output_check,
    unregister_output_check,
)

BLUEPRINTS = Path(__file__).resolve().parents[2] / "blueprints"
ALL = set(PII_KINDS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail me at jane.doe+work@example.co.uk.", "Mail me at [email removed]."),
        ("<ops-team@mail.example.com>", "<[email removed]>"),
        ("Call +44 20 7946 0958 today", "Call [phone removed] today"),
        ("+1 (555) 123-4567", "[phone removed]"),
        ("(555) 123-4567", "[phone removed]"),
        ("555-123-4567 or 555.123.4568", "[phone removed] or [phone removed]"),
        ("+49 30 12345678", "[phone removed]"),
        ("+44 (0)20 7946 0958", "[phone removed]"),
        ("0044 20 7946 0958", "[phone removed]"),
        ("030 1234567", "[phone removed]"),
        ("06 12 34 56 78", "[phone removed]"),
        ("0612345678", "[phone removed]"),
        ("Call 020 7946 0958\n2. Then wait", "Call [phone removed]\n2. Then wait"),
        ("card 4111 1111 1111 1111, thanks", "card [card number removed], thanks"),
        ("4111-1111-1111-1111", "[card number removed]"),
        ("5555555555554444", "[card number removed]"),
        ("Amex 3782 822463 10005", "Amex [card number removed]"),
    ],
)
def test_personal_data_is_replaced_by_a_placeholder(text, expected):
    assert redact(text, ALL)[0] == expected


@pytest.mark.parametrize(
    "text",
    [
        "Order 4111 1111 1111 1112 shipped",  # fails the Luhn check
        "Order number 1234 5678 9012 3456",
        "Reference 12345678901234",
        "ref 1234 5678 9012 3456 7890 1234",  # longer than any card number
        "on 2024-01-15 at 10:30",
        "15/01/2024, 01/02/2024 and 15.01.2024",
        "version 1.2.3, v2.10.4 and 10.15.7",
        "IP 192.168.100.200",
        "order 12345678 and code 1234567",
        "price 1,234,567.89",
        "ISBN 978-3-16-148410-0",
        "+1 555",  # too short for a phone number
        "room 12 and 3 4 5 6",
        "user@localhost is not an address on the internet",
    ],
)
def test_things_that_only_look_like_personal_data_are_kept(text):
    assert redact(text, ALL) == (text, {})


def test_only_the_configured_kinds_are_redacted_and_counted():
    text = "a@b.io, a@b.io, +44 20 7946 0958 and 4111 1111 1111 1111"

    assert redact(text, {"card_number"}) == (
        "a@b.io, a@b.io, +44 20 7946 0958 and [card number removed]",
        {"card_number": 1},
    )
    assert redact(text, ALL)[1] == {"email": 2, "phone": 1, "card_number": 1}
    assert redact(text, set()) == (text, {})


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


# Input


def _config(**overrides) -> GuardrailConfig:
    blueprint = yaml.safe_load((BLUEPRINTS / "it-helpdesk.yaml").read_text())
    return GuardrailConfig.from_blueprint({**blueprint["version"]["guardrails"], **overrides})


def test_the_blueprints_guardrails_are_read():
    config = _config()

    assert config.max_input_chars == 6000
    assert config.pii_redaction == {"phone", "card_number"}
    assert "disabling antivirus" in config.blocked_topics
    assert config.refusal.startswith("I can't help with that.")


def test_missing_guardrails_mean_no_redaction_no_topics_and_the_largest_limit():
    config = GuardrailConfig.from_blueprint(None)

    assert config == GuardrailConfig(max_input_chars=100_000)
    assert config.refusal == "Sorry, I can't help with that."


def test_an_unknown_kind_of_personal_data_is_a_configuration_error():
    with pytest.raises(ValueError, match="unknown kinds of personal data: passport"):
        GuardrailConfig.from_blueprint({"pii_redaction": ["email", "passport"]})


def test_an_allowed_message_is_redacted_as_configured():
    verdict = check_input("My VPN fails, call me on +44 20 7946 0958 (a@b.io)", _config())

    assert verdict.allowed
    assert verdict.text == "My VPN fails, call me on [phone removed] (a@b.io)"
    assert verdict.redactions == {"phone": 1}
    assert (verdict.reason, verdict.code) == (None, None)


def test_a_message_over_the_limit_is_refused_and_says_the_limit():
    verdict = check_input("x" * 6001, _config())

    assert not verdict.allowed
    assert verdict.code == "too_long"
    assert verdict.reason is not None
    assert "6,001 characters" in verdict.reason
    assert "under 6,000 characters" in verdict.reason
    assert check_input("x" * 6000, _config()).allowed


@pytest.mark.parametrize(
    "text",
    [
        "How do I go about disabling antivirus on my laptop?",
        "DISABLING   ANTIVIRUS please",
        "tips for disabling-antivirus",
        "where can I get pirated software?",
        "Is there pirated softwares for Photoshop",
    ],
)
def test_a_blocked_topic_is_refused_with_the_blueprints_message(text):
    verdict = check_input(text, _config())

    assert not verdict.allowed
    assert verdict.code == "blocked_topic"
    assert verdict.reason == _config().refusal_message


@pytest.mark.parametrize(
    "text",
    [
        "My antivirus is disabling the VPN",
        "Is the printer pirate-proof?",
        "disabling antivirusx",
    ],
)
def test_topics_match_whole_phrases_only(text):
    assert check_input(text, _config()).allowed


def test_topics_match_singular_plural_and_apostrophes():
    config = GuardrailConfig(blocked_topics=("fake reviews", "other employees' salaries"))

    assert config.blocked_topic("write me a Fake Review") == "fake reviews"
    assert config.blocked_topic("what are other employees salaries") == "other employees' salaries"
    assert config.blocked_topic("other employees' salary") == "other employees' salaries"
    assert config.blocked_topic("a fake reviewer") is None


# Streaming output

STREAMED = (
    "Sure! Write to jane.doe@example.com or call +44 20 7946 0958 (or 555-123-4567).\n"
    "Card 4111 1111 1111 1111 was charged; order 4111 1111 1111 1112 on 2024-01-15 is fine.\n"
    "Versions 1.2.3 and numbers 1 2 3 stay. Contact: ops@mail.example.org."
)


def _stream(chunks: list[str], kinds=ALL) -> tuple[str, list[str]]:
    redactor = StreamingRedactor(kinds)
    emitted = [redactor.feed(chunk) for chunk in chunks]
    emitted.append(redactor.flush())
    return "".join(emitted), emitted


def test_streamed_output_is_redacted_exactly_like_the_whole_text_at_every_split():
    expected = redact(STREAMED, ALL)[0]

    for offset in range(len(STREAMED) + 1):
        output, _ = _stream([STREAMED[:offset], STREAMED[offset:]])
        assert output == expected, offset


def test_streamed_output_is_redacted_when_it_arrives_character_by_character():
    output, emitted = _stream(list(STREAMED))

    assert output == redact(STREAMED, ALL)[0]
    assert not any("@example" in piece or "7946" in piece or "123-" in piece for piece in emitted)


@pytest.mark.parametrize("seed", range(25))
def test_streamed_output_is_redacted_for_random_chunkings(seed):
    rng = random.Random(seed)
    chunks, rest = [], STREAMED
    while rest:
        size = rng.randint(1, 12)
        chunks.append(rest[:size])
        rest = rest[size:]

    assert _stream(chunks)[0] == redact(STREAMED, ALL)[0]


def test_a_partial_phone_number_is_held_back_until_it_is_complete():
    redactor = StreamingRedactor({"phone"})

    assert redactor.feed("Call me on +44 20 ") == "Call me on "
    assert redactor.feed("7946") == ""
    assert redactor.feed(" 0958 today") == ""
    assert redactor.feed(" or") == "[phone removed] today "
    assert redactor.flush() == "or"
    assert redactor.counts == {"phone": 1}


def test_text_without_redaction_streams_through_untouched():
    redactor = StreamingRedactor(set())

    assert redactor.feed("a@b.io 4111") == "a@b.io 4111"
    assert redactor.flush() == ""


# Output checks


@pytest.fixture
def registry() -> Iterator[None]:
    saved = list(guardrails._output_checks)
    yield
    guardrails._output_checks[:] = saved


INSTRUCTIONS = yaml.safe_load((BLUEPRINTS / "it-helpdesk.yaml").read_text())["version"][
    "instructions"
]


def _context() -> OutputContext:
    return OutputContext(system_prompt=INSTRUCTIONS, config=_config())


def test_an_ordinary_reply_passes_the_checks():
    reply = "Quit the VPN client and open it again, then approve the MFA prompt."

    assert check_output(reply, _context()) == OutputVerdict(True, reply)


def test_a_reply_repeating_the_instructions_is_refused():
    leaked = "Sure, here are my instructions:\n\n" + INSTRUCTIONS.upper().replace("\n", " ")

    verdict = check_output(leaked, _context())

    assert verdict == OutputVerdict(False, _config().refusal_message, "prompt_leak")


def test_a_short_quote_of_the_instructions_is_not_a_leak():
    reply = "I follow the guide's order: the quickest and safest checks first."

    assert check_output(reply, _context()).allowed


@pytest.mark.usefixtures("registry")
def test_registered_checks_can_replace_a_reply_and_run_in_order():
    @register_output_check
    def shout(reply: str, context: OutputContext) -> OutputVerdict | None:
        return OutputVerdict(True, reply.upper())

    @register_output_check
    def sign(reply: str, context: OutputContext) -> OutputVerdict | None:
        return OutputVerdict(True, f"{reply} -- IT")

    assert check_output("all done", _context()) == OutputVerdict(True, "ALL DONE -- IT", "replaced")

    unregister_output_check(shout)
    assert check_output("all done", _context()).text == "all done -- IT"


@pytest.mark.usefixtures("registry")
def test_a_failing_check_refuses_the_reply():
    def broken(reply: str, context: OutputContext) -> OutputVerdict | None:
        raise RuntimeError("bug")

    register_output_check(broken)

    assert check_output("fine", _context()) == OutputVerdict(
        False, _config().refusal_message, "check_failed"
    )
