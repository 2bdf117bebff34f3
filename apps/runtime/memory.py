"""The conversation window: which messages of a conversation are sent to the model.

Token counts here are estimates, not a provider's tokenizer (tiktoken and friends need files that
are not available offline and differ per provider): about four characters per token for words,
three digits per token for numbers, one per punctuation mark and one per character of scripts
written without spaces (Chinese, Japanese, Korean). That is a little more than English text really
costs, which is the safe side for a budget.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace

from apps.runtime.types import ChatMessage

# Per-message cost of the role and the framing around it, as providers count it.
MESSAGE_OVERHEAD = 4
# A truncated message keeps at least this much, so the model still sees what was asked.
MIN_TRUNCATED_TOKENS = 32
TRUNCATION_MARK = "\n\n[… part of this message was removed to fit the conversation window …]\n\n"

_PIECES = re.compile(
    r"(?P<ideographs>[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff])"
    r"|(?P<word>[^\W\d_]+)"
    r"|(?P<number>\d+)"
    r"|(?P<space>\s{2,})"
    r"|(?P<single_space>\s)"
    r"|(?P<symbol>.)",
    re.DOTALL,
)


# The same instructions, history and tool output are counted again on every turn and round:
# counts are kept by the text's hash and length (a few bytes each, whatever the text's size; a
# collision would only skew an estimate), the oldest dropped past COUNTS_KEPT.
COUNTS_KEPT = 4_096
_counts: dict[tuple[int, int], int] = {}
_counts_lock = threading.Lock()


def count_tokens(text: str) -> int:
    """An estimate of how many tokens ``text`` costs (see the module docstring); deterministic."""
    key = (hash(text), len(text))
    found = _counts.get(key)
    if found is None:
        found = _count(text)
        with _counts_lock:
            _counts[key] = found
            while len(_counts) > COUNTS_KEPT:
                _counts.pop(next(iter(_counts)))
    return found


def _count(text: str) -> int:
    total = 0
    for match in _PIECES.finditer(text):
        kind = match.lastgroup
        if kind == "word":
            total += math.ceil(len(match.group()) / 4)
        elif kind == "number":
            total += math.ceil(len(match.group()) / 3)
        elif kind != "single_space":
            total += 1
    return total


def count_message_tokens(message: ChatMessage) -> int:
    total = MESSAGE_OVERHEAD + count_tokens(message.content)
    for call in message.tool_calls:
        total += 3 + count_tokens(call.name) + count_tokens(json.dumps(call.arguments))
    if message.role == "tool":
        total += count_tokens(message.name) + 1
    return total


def count_messages_tokens(messages: Iterable[ChatMessage]) -> int:
    return sum(count_message_tokens(message) for message in messages)


def truncate_middle(text: str, max_tokens: int) -> str:
    """``text`` cut down to about ``max_tokens`` by removing its middle: the start usually says
    what is asked and the end often holds the actual question, so both are kept."""
    if count_tokens(text) <= max_tokens:
        return text
    low, high = 0, len(text)
    best = TRUNCATION_MARK.strip()
    # The largest number of kept characters whose estimate still fits.
    while low <= high:
        keep = (low + high) // 2
        head = text[: (keep + 1) // 2]
        tail = text[len(text) - keep // 2 :] if keep // 2 else ""
        candidate = f"{head.rstrip()}{TRUNCATION_MARK}{tail.lstrip()}"
        if count_tokens(candidate) <= max_tokens:
            best = candidate
            low = keep + 1
        else:
            high = keep - 1
    return best


class Window(list[ChatMessage]):
    """The messages to send, system prompt first, and what fitting them cost: ``dropped`` older
    messages left out and whether a message was ``truncated``."""

    def __init__(self, messages: Iterable[ChatMessage], *, dropped: int, truncated: bool):
        super().__init__(messages)
        self.dropped = dropped
        self.truncated = truncated

    @property
    def tokens(self) -> int:
        return count_messages_tokens(self)


def _units(history: Sequence[ChatMessage]) -> list[list[int]]:
    """Indexes of ``history`` grouped so that an assistant message that called tools and the
    tool results answering it stay together: providers reject either one without the other."""
    units: list[list[int]] = []
    open_calls: set[str] = set()
    for index, message in enumerate(history):
        if message.role == "tool" and units and (message.tool_call_id in open_calls):
            units[-1].append(index)
            continue
        units.append([index])
        open_calls = (
            {call.id for call in message.tool_calls} if message.role == "assistant" else set()
        )
    return units


def _shrink(
    messages: list[ChatMessage], order: Iterable[int], excess: int
) -> tuple[list[ChatMessage], bool]:
    truncated = False
    for index in order:
        if excess <= 0:
            break
        message = messages[index]
        cost = count_message_tokens(message)
        target = max(MIN_TRUNCATED_TOKENS, cost - excess)
        if target >= cost:
            continue
        content_budget = max(1, target - (cost - count_tokens(message.content)))
        shorter = replace(message, content=truncate_middle(message.content, content_budget))
        excess -= cost - count_message_tokens(shorter)
        messages[index] = shorter
        truncated = True
    return messages, truncated


def fit_window(
    system: ChatMessage,
    history: Sequence[ChatMessage],
    budget: int,
    reserve_for_reply: int,
) -> Window:
    """The system prompt and the newest messages of ``history`` that fit in ``budget`` tokens
    minus ``reserve_for_reply``.

    - The latest user message and everything after it (the tool calls and results of the current
      turn) are always kept. If they alone do not fit, the largest of them (normally the user
      message) is truncated from the middle, then the next; the window says so in ``truncated``.
    - Older messages are kept newest first while they fit, as whole units (a tool-calling
      assistant message with its results), and never with a gap.
    - The kept history starts with a user message, as some providers require.

    Only a system prompt that alone exceeds the budget can make the window exceed it.
    """
    available = budget - reserve_for_reply - count_message_tokens(system)
    user_indexes = [i for i, message in enumerate(history) if message.role == "user"]
    current_start = user_indexes[-1] if user_indexes else len(history)

    current = list(history[current_start:])
    truncated = False
    excess = count_messages_tokens(current) - available
    if excess > 0 and current:
        # The largest first: the message that alone overflows the window is the one to cut.
        order = sorted(
            (i for i, message in enumerate(current) if message.role in ("user", "tool")),
            key=lambda i: (-count_message_tokens(current[i]), i),
        )
        current, truncated = _shrink(current, order, excess)
    remaining = available - count_messages_tokens(current)

    kept: list[int] = []
    for unit in reversed(_units(history[:current_start])):
        cost = count_messages_tokens(history[i] for i in unit)
        if cost > remaining:
            break
        kept = unit + kept
        remaining -= cost
    while kept and history[kept[0]].role != "user":
        kept.pop(0)

    messages = [system, *(history[i] for i in kept), *current]
    return Window(messages, dropped=current_start - len(kept), truncated=truncated)
