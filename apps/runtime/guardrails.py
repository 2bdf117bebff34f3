"""Guardrails a blueprint configures: an input length limit, PII redaction on input and output,
blocked topics with a clear refusal, and output checks run on every complete reply.

Redaction is pattern-based and errs towards redacting: it finds emails, phone numbers in
international, North American and European national formats, and card numbers that pass the Luhn
check. Streamed output goes through ``StreamingRedactor``, which never emits part of a match.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from django.utils.translation import gettext

logger = logging.getLogger(__name__)

PiiKind = Literal["email", "phone", "card_number"]
PII_KINDS: tuple[PiiKind, ...] = ("email", "card_number", "phone")  # the order they are applied
PLACEHOLDERS: dict[str, str] = {
    "email": "[email removed]",
    "phone": "[phone removed]",
    "card_number": "[card number removed]",
}
# The most a blueprint may allow (docs/blueprints.md), used when it sets no limit.
DEFAULT_MAX_INPUT_CHARS = 100_000

_EMAIL = re.compile(
    # Starts only where a word starts, so a long run without "@" is scanned once, not once per
    # character.
    r"(?<![\w.%+-])[\w.%+-]+@[^\W_](?:[\w-]*[^\W_])?(?:\.[^\W_](?:[\w-]*[^\W_])?)*\.[^\W\d_]{2,}"
    r"(?![\w-])"
)
_SEP = r"[ \t.\-]"  # phone numbers never span lines
_PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ \t.\-/])"  # not the middle of a longer number or word
    r"(?:"
    rf"(?:\+|00(?=\d{{1,3}}{_SEP}))\d{{1,3}}(?:{_SEP}?\(\d{{1,4}}\))?(?:{_SEP}?\d{{1,5}}){{1,5}}"
    rf"|\(\d{{2,5}}\){_SEP}?\d{{3,4}}{_SEP}?\d{{3,4}}"  # (555) 123-4567
    r"|\d{3}([ .\-])\d{3}\1\d{4}"  # 555-123-4567, 555.123.4567
    r"|0\d{1,4}(?:[ \t/\-]?\d{2,8}){1,4}"  # national with a trunk 0: 030 1234567, 06 12 34 56 78
    r")"
    r"(?!\d|[ \t.\-/]\d)"
)
_CARD = re.compile(r"(?<![\d-])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_phone(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if candidate.startswith(("+", "00")):
        return 7 <= len(digits) <= 15
    # A national number has at least 9 digits, which also keeps dates such as 01/02/2024 out.
    return 9 <= len(digits) <= 15


def _is_card(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


_PATTERNS: dict[str, tuple[re.Pattern[str], Any]] = {
    "email": (_EMAIL, None),
    "card_number": (_CARD, _is_card),
    "phone": (_PHONE, _is_phone),
}


def redact(text: str, kinds: Collection[str]) -> tuple[str, dict[str, int]]:
    """``text`` with the personal data of the given kinds replaced by placeholders such as
    ``[email removed]``, and how many of each kind were replaced."""
    counts: dict[str, int] = {}
    for kind in PII_KINDS:
        if kind not in kinds:
            continue
        pattern, validate = _PATTERNS[kind]
        replaced = 0

        def replacement(match: re.Match[str], kind: str = kind, validate: Any = validate) -> str:
            nonlocal replaced
            if validate is not None and not validate(match.group(0)):
                return match.group(0)
            replaced += 1
            return PLACEHOLDERS[kind]

        text = pattern.sub(replacement, text)
        if replaced:
            counts[kind] = replaced
    return text, counts


class StreamingRedactor:
    """Redacts a reply streamed as text deltas, giving exactly what ``redact`` gives for the whole
    reply, so no partial email, phone or card number ever leaves the server.

    Text is held back until a point no match can span: after whitespace that follows a token
    without digits (phone and card numbers are digit groups separated by single characters; an
    email is one token). A long run of digit groups is held until it ends; ``flush`` releases the
    rest when the reply is complete.
    """

    def __init__(self, kinds: Collection[str]) -> None:
        self.kinds = frozenset(kinds) & set(PII_KINDS)
        self.counts: Counter[str] = Counter()
        self._pending = ""

    def feed(self, delta: str) -> str:
        if not self.kinds:
            return delta
        self._pending += delta
        cut = _safe_cut(self._pending)
        if not cut:
            return ""
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._redact(ready)

    def flush(self) -> str:
        ready, self._pending = self._pending, ""
        return self._redact(ready) if self.kinds else ready

    def _redact(self, text: str) -> str:
        redacted, counts = redact(text, self.kinds)
        self.counts.update(counts)
        return redacted


def _safe_cut(text: str) -> int:
    """The end of the longest prefix of ``text`` that can be redacted on its own."""
    end = len(text)
    while end > 0:
        # The last whitespace at or before end, and the token in front of its run.
        space = end - 1
        while space >= 0 and not text[space].isspace():
            space -= 1
        if space < 0:
            return 0
        run_start = space
        while run_start > 0 and text[run_start - 1].isspace():
            run_start -= 1
        token_start = run_start
        while token_start > 0 and not text[token_start - 1].isspace():
            token_start -= 1
        if not any(char.isdigit() for char in text[token_start:run_start]):
            return space + 1
        end = token_start
    return 0


# Blocked topics


def _plural_forms(word: str, pattern: str) -> str:
    lower = word.lower()
    if lower.endswith("ies") and len(word) > 4:
        return f"{pattern[:-3]}(?:y|ies)"
    if lower.endswith("y") and len(word) > 2 and lower[-2] not in "aeiou":
        return f"{pattern[:-1]}(?:y|ies)"
    if lower.endswith("s") and len(word) > 3:
        return f"{pattern[:-1]}(?:s|es)?"
    return f"{pattern}(?:s|es)?"


def _topic_pattern(topic: str) -> re.Pattern[str]:
    """Whole words, any case, any spacing or hyphens between them; the last word also in its
    plural or singular form ("fake reviews" blocks "a fake review")."""
    words = topic.split()
    parts = []
    for index, word in enumerate(words):
        bare = word.strip("'’")
        pattern = re.sub(r"['’]", "['’]?", re.escape(bare))
        if index == len(words) - 1 and bare[-1:].isalpha():
            pattern = _plural_forms(bare, pattern)
        parts.append(pattern + ("['’]?" if word.endswith(("'", "’")) else ""))
    return re.compile(r"(?<!\w)" + r"[\s\-]+".join(parts) + r"(?!\w)", re.IGNORECASE)


@dataclass(frozen=True)
class GuardrailConfig:
    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS
    pii_redaction: frozenset[str] = frozenset()
    blocked_topics: tuple[str, ...] = ()
    refusal_message: str = ""
    _topic_patterns: tuple[tuple[str, re.Pattern[str]], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        unknown = set(self.pii_redaction) - set(PII_KINDS)
        if unknown:
            raise ValueError(f"unknown kinds of personal data: {', '.join(sorted(unknown))}")
        patterns = tuple((topic, _topic_pattern(topic)) for topic in self.blocked_topics if topic)
        object.__setattr__(self, "_topic_patterns", patterns)

    @classmethod
    def from_blueprint(cls, guardrails: Mapping[str, Any] | None) -> GuardrailConfig:
        """From a blueprint version's ``guardrails`` mapping (docs/blueprints.md)."""
        guardrails = guardrails or {}
        return cls(
            max_input_chars=int(guardrails.get("max_input_chars") or DEFAULT_MAX_INPUT_CHARS),
            pii_redaction=frozenset(guardrails.get("pii_redaction") or ()),
            blocked_topics=tuple(str(topic) for topic in guardrails.get("blocked_topics") or ()),
            refusal_message=str(guardrails.get("refusal_message") or ""),
        )

    @property
    def refusal(self) -> str:
        return self.refusal_message or gettext("Sorry, I can't help with that.")

    def blocked_topic(self, text: str) -> str | None:
        for topic, pattern in self._topic_patterns:
            if pattern.search(text):
                return topic
        return None


@dataclass(frozen=True)
class InputVerdict:
    allowed: bool
    text: str  # redacted, whatever the verdict: this is what may be stored and sent on
    reason: str | None = None  # shown to the person when not allowed
    code: Literal["too_long", "blocked_topic"] | None = None
    redactions: Mapping[str, int] = field(default_factory=dict)
    topic: str | None = None


def check_input(text: str, config: GuardrailConfig) -> InputVerdict:
    redacted, counts = redact(text, config.pii_redaction)
    if len(text) > config.max_input_chars:
        reason = gettext(
            "Your message is too long (%(length)s characters). Please keep it under %(limit)s "
            "characters, for example by sending the most relevant part."
        ) % {"length": f"{len(text):,}", "limit": f"{config.max_input_chars:,}"}
        return InputVerdict(False, redacted, reason, "too_long", counts)
    topic = config.blocked_topic(text)
    if topic is not None:
        return InputVerdict(False, redacted, config.refusal, "blocked_topic", counts, topic)
    return InputVerdict(True, redacted, None, None, counts)


# Output checks


@dataclass(frozen=True)
class OutputContext:
    system_prompt: str
    config: GuardrailConfig


@dataclass(frozen=True)
class OutputVerdict:
    allowed: bool
    text: str  # the reply to keep: the original, a replacement, or the refusal
    code: str | None = None


class OutputCheck(Protocol):
    """Called with the complete (already redacted) reply. Returns ``None`` to keep it, or a
    verdict with a replacement (``allowed=True``) or a refusal (``allowed=False``)."""

    def __call__(self, reply: str, context: OutputContext) -> OutputVerdict | None: ...


_output_checks: list[OutputCheck] = []


def register_output_check(check: OutputCheck) -> OutputCheck:
    """Add a check run on every reply, in registration order; usable as a decorator."""
    if check not in _output_checks:
        _output_checks.append(check)
    return check


def unregister_output_check(check: OutputCheck) -> None:
    if check in _output_checks:
        _output_checks.remove(check)


def output_checks() -> tuple[OutputCheck, ...]:
    return tuple(_output_checks)


def check_output(reply: str, context: OutputContext) -> OutputVerdict:
    """Run every registered check; each sees the previous one's replacement, and the first
    refusal wins. A check that fails refuses the reply: a guardrail that cannot run must not
    wave the reply through."""
    text = reply
    for check in tuple(_output_checks):
        try:
            verdict = check(text, context)
        except Exception:
            logger.exception("output check %r failed", check)
            return OutputVerdict(False, context.config.refusal, "check_failed")
        if verdict is None:
            continue
        if not verdict.allowed:
            return verdict
        text = verdict.text
    return OutputVerdict(True, text, None if text == reply else "replaced")


PROMPT_LEAK_WORDS = 20


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def _shingles(words: list[str], size: int) -> Iterable[tuple[str, ...]]:
    return (tuple(words[i : i + size]) for i in range(len(words) - size + 1))


@functools.lru_cache(maxsize=256)
def _prompt_shingles(system_prompt: str) -> tuple[int, frozenset[tuple[str, ...]]]:
    """The run length and the runs of words of a system prompt (once per prompt: every reply of
    a deployment is checked against the same one); no runs for a prompt under 8 words."""
    prompt = _words(system_prompt)
    if len(prompt) < 8:
        return 0, frozenset()
    size = min(PROMPT_LEAK_WORDS, len(prompt))
    return size, frozenset(_shingles(prompt, size))


def prompt_leak_check(reply: str, context: OutputContext) -> OutputVerdict | None:
    """Refuse a reply that repeats the instructions: any run of ``PROMPT_LEAK_WORDS`` consecutive
    words of the system prompt (ignoring case, punctuation and line breaks), or the whole prompt
    when it is shorter than that."""
    size, leaked = _prompt_shingles(context.system_prompt)
    if not leaked:
        return None
    reply_words = _words(reply)
    if len(reply_words) < size:
        return None
    if any(shingle in leaked for shingle in _shingles(reply_words, size)):
        return OutputVerdict(False, context.config.refusal, "prompt_leak")
    return None


register_output_check(prompt_leak_check)
