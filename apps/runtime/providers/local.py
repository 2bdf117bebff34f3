"""The built-in ``local`` provider: offline and deterministic, with no language model and no
network beyond the product's own database (knowledge search runs in PostgreSQL).

It speaks the same function-calling protocol as the remote providers, so the engine runs it the
same way:

1. For a user's question it asks for a tool: ``calculator`` when the question holds arithmetic
   ("what is 12% of 4,500?", "(1200-950)/950*100", "compound growth of 5% over 3 years on
   1000"), otherwise ``knowledge_search`` with the question as the query.
2. Given the tool results, it composes a Markdown answer from them: the most relevant passages
   with their document titles, or the calculated result, or an honest "not found" with
   suggestions.

Greetings get a short introduction built from the first sentence of the instructions. Without
a fitting tool it searches the ``knowledge`` it was built with itself, and otherwise says what it
cannot do and that an API key in the deployment's settings gives fuller answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import textwrap
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.utils.translation import gettext

from apps.runtime.memory import count_messages_tokens, count_tokens
from apps.runtime.tools import (
    ERROR_PREFIX,
    CalculatorError,
    KnowledgeDoc,
    NotAnExpression,
    calculate,
    format_passages,
    knowledge_search,
    parse_passages,
    query_words,
    strip_thousands_separators,
)
from apps.runtime.types import (
    BadRequest,
    ChatMessage,
    Event,
    ProviderRequest,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    Usage,
)

WORDS_PER_DELTA = 6
MAX_QUERY_CHARS = 500  # the knowledge_search schema's limit
# Further passages are quoted only while the answer stays readable (and within typical limits).
MAX_QUOTED_CHARS = 1800

_GREETING_WORDS = """
    hi hello hey hiya howdy greetings yo hallo hola bonjour good morning afternoon evening day
    there all team everyone folks
"""
_THANKS_WORDS = "thanks thank you thx ty cheers so very much many a lot great"
_THANKS_MARKERS = frozenset({"thanks", "thank", "thx", "ty", "cheers"})

_NUMBER = r"\d[\d,]*(?:\.\d+)?"
_FUNCTION_NAMES = r"sqrt|round|abs|min|max|log|exp"
# A run of arithmetic in a sentence: numbers, operators, parentheses, functions, "% of".
_EXPRESSION_RUN = re.compile(
    rf"(?:(?:{_FUNCTION_NAMES})\s*\(|{_NUMBER}|\.\d+|%\s*of\b|\*\*|[-+*/%^×÷()]|[ \t]+)+",
    re.IGNORECASE,
)
_OPERATOR = re.compile(rf"[+*/^×÷]|\s-\s|\)\s*-|-\s*\(|%\s*of\b|(?:{_FUNCTION_NAMES})\s*\(", re.I)
_PERCENT_WORD = re.compile(r"\s*(?:percent|per cent)\b", re.IGNORECASE)
_GROWTH = re.compile(r"\b(?:compound\w*|grow\w*|interest)\b", re.IGNORECASE)
_RATE = re.compile(rf"({_NUMBER})\s*%")
_PERIODS = re.compile(rf"({_NUMBER})\s*(years?|months?|quarters?|weeks?|days?|periods?)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")


@dataclass(frozen=True)
class Calculation:
    expression: str  # what the calculator is asked
    display: str  # how the question put it


def find_calculation(question: str) -> Calculation | None:
    """The arithmetic a question asks for, if any, checked by the calculator itself."""
    text = _PERCENT_WORD.sub("%", question)
    growth = _compound_growth(text)
    if growth:
        return growth
    best: Calculation | None = None
    for match in _EXPRESSION_RUN.finditer(text):
        display = match.group(0).strip(" \t,.")
        display = _balance_parentheses(display)
        # A lone "2-4" or "2024-01-15" is a range or a date, not a subtraction.
        if not display or not _OPERATOR.search(display):
            continue
        expression = strip_thousands_separators(display)
        try:
            calculate(expression)
        except NotAnExpression:
            continue
        except CalculatorError:
            pass  # arithmetic all the same ("1/0"): the calculator will explain what is wrong
        if best is None or len(display) > len(best.display):
            best = Calculation(expression, display)
    return best


def _balance_parentheses(text: str) -> str:
    # "(what is 3 * 4)" leaves a dangling ")"; drop unmatched ones at either end.
    while text.endswith(")") and text.count(")") > text.count("("):
        text = text[:-1].rstrip()
    while text.startswith("(") and text.count("(") > text.count(")"):
        text = text[1:].lstrip()
    return text


def _compound_growth(text: str) -> Calculation | None:
    if not _GROWTH.search(text):
        return None
    rate = _RATE.search(text)
    periods = _PERIODS.search(text)
    if not rate or not periods:
        return None
    used = {rate.span(1), periods.span(1)}
    principal = next(
        (m for m in re.finditer(_NUMBER, text) if m.span() not in used and "%" not in m.group()),
        None,
    )
    if principal is None:
        return None
    amount, percent, count = principal.group(0), rate.group(1), periods.group(1)
    unit = periods.group(2).lower()
    singular = unit[:-1] if unit.endswith("s") else unit
    expression = strip_thousands_separators(f"{amount} * (1 + {percent}%) ** {count}")
    display = gettext("%(amount)s growing by %(rate)s%% per %(unit)s for %(count)s %(units)s") % {
        "amount": amount,
        "rate": percent,
        "unit": singular,
        "count": count,
        "units": unit if count != "1" else singular,
    }
    return Calculation(expression, display)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[^\W_]+", text.lower()))


def _stem(word: str) -> str:
    # Crude on purpose: enough to see "connect" in "connection" or "refund" in "refunds".
    return word if len(word) <= 4 else word[: max(4, len(word) - 3)]


def _matches(question: Sequence[str], text: str) -> set[str]:
    words = _words(text)
    found = set()
    for word in question:
        stem = _stem(word)
        if any(
            w == word or (len(word) > 4 and w.startswith(stem)) or w == f"{word}s" for w in words
        ):
            found.add(word)
    return found


def _relevant(question: Sequence[str], matched: set[str]) -> bool:
    if not question:
        return False
    return len(matched) / len(question) >= 0.5 or len(matched) >= 3


def _to_markdown(text: str) -> str:
    """Indented lines in a knowledge document are code: fence them so they render as code."""
    out: list[str] = []
    code: list[str] = []
    for line in [*text.split("\n"), ""]:
        if line.startswith(("    ", "\t")):
            code.append(line)
            continue
        if code:
            out.extend(["```", *textwrap.dedent("\n".join(code)).split("\n"), "```"])
            code = []
        out.append(line)
    return "\n".join(out).strip()


def _lead_sentence(question: Sequence[str], text: str) -> tuple[str | None, int]:
    """The sentence of a passage that best answers the question, and how many of the question's
    words it has."""
    best, best_score = None, 0
    prose = " ".join(line for line in text.split("\n") if not line.startswith((" ", "\t")))
    for index, sentence in enumerate(_SENTENCE.split(prose)):
        sentence = sentence.strip()
        words = sentence.split()
        # The guides open a paragraph with a heading-like sentence ("VPN will not connect."),
        # and questions or introductions to a list are no answer either.
        if (
            len(words) < (8 if index == 0 else 5)
            or (index == 0 and ":" in sentence)
            or sentence.endswith((":", "?"))
            or len(sentence) > 300
        ):
            continue
        score = len(_matches(question, sentence))
        if score > best_score:
            best, best_score = sentence, score
    # One word in common is no answer to a question of several.
    if best_score < min(2, len(question)):
        return None, 0
    return best, best_score


def _format_result(result: str) -> str:
    try:
        value = Decimal(result)
    except InvalidOperation:
        return result
    if "e" in result.lower():
        return result
    if value == value.to_integral_value():
        return f"{int(value):,}"
    exponent = value.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) else 0
    if abs(value) >= 1 and decimals > 2:
        rounded = f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"
        return gettext("about %(rounded)s (%(exact)s before rounding)") % {
            "rounded": rounded,
            "exact": result,
        }
    if abs(value) >= 1000:
        return f"{value:,}"
    return result


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    return _SENTENCE.split(text, maxsplit=1)[0].strip() if text else ""


def _introduction(system: str) -> str:
    sentence = _first_sentence(system)
    about = ""
    if sentence.startswith("You are "):
        about = "I'm " + sentence[len("You are ") :]
    elif sentence.startswith("You "):
        about = "I " + sentence[len("You ") :]
    about = re.sub(r"\byour\b", "my", about)
    about = re.sub(r"\byourself\b", "myself", about)
    return about


def _call_id(request: ProviderRequest, name: str, arguments: dict[str, str]) -> str:
    seed = f"{len(request.messages)}:{name}:{json.dumps(arguments, sort_keys=True)}"
    return "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]


def _deltas(text: str) -> Iterator[str]:
    pieces = re.findall(r"\s*\S+\s*", text) or [text]
    for start in range(0, len(pieces), WORDS_PER_DELTA):
        yield "".join(pieces[start : start + WORDS_PER_DELTA])


class LocalProvider:
    """``stream`` a `ProviderRequest` without any model: see the module docstring.

    ``knowledge`` is searched directly when a request offers no ``knowledge_search`` tool (a
    blueprint that ships documents but did not enable the tool, or a fallback call without
    tools); with the tool offered, the provider asks for it like a real model would.
    """

    name = "local"
    remote = False  # runs in this process: no circuit breaker (apps/runtime/resilience.py)

    def __init__(self, knowledge: Sequence[KnowledgeDoc] = ()) -> None:
        self.knowledge = tuple(knowledge)

    async def aclose(self) -> None:
        """Nothing to release; here so callers treat every provider alike."""

    async def stream(self, request: ProviderRequest) -> AsyncIterator[Event]:
        started = time.monotonic()
        if not request.messages:
            raise BadRequest("the request has no messages", provider=self.name)
        last = request.messages[-1]
        offered = {tool.name for tool in request.tools}
        input_tokens = count_messages_tokens(request.messages) + sum(
            count_tokens(f"{tool.name} {tool.description} {json.dumps(tool.parameters)}")
            for tool in request.tools
        )

        if last.role == "user":
            call = self._tool_call(request, last.content, offered)
            if call is not None:
                yield ToolCallRequested(call)
                yield Usage(
                    provider=self.name,
                    model=request.model,
                    input_tokens=input_tokens,
                    output_tokens=count_tokens(f"{call.name} {json.dumps(call.arguments)}") + 3,
                    latency_ms=_elapsed_ms(started),
                    finish_reason="tool_calls",
                )
                return
            answer = await self._answer_directly(request, last.content, offered)
        elif last.role == "tool":
            answer = self._answer_from_tools(request)
        else:
            raise BadRequest(
                f"the last message must be from the user or a tool, not {last.role}",
                provider=self.name,
            )

        emitted = 0
        finish_reason = "stop"
        for delta in _deltas(answer):
            cost = count_tokens(delta)
            if request.max_output_tokens is not None and emitted + cost > request.max_output_tokens:
                finish_reason = "length"
                break
            emitted += cost
            yield TextDelta(delta)
            await asyncio.sleep(0)  # let the consumer forward each delta as it comes
        yield Usage(
            provider=self.name,
            model=request.model,
            input_tokens=input_tokens,
            output_tokens=emitted,
            latency_ms=_elapsed_ms(started),
            finish_reason=finish_reason,
        )

    # Step 1: which tool to ask for

    def _tool_call(
        self, request: ProviderRequest, question: str, offered: set[str]
    ) -> ToolCall | None:
        if _is_greeting(question) or _is_thanks(question):
            return None
        if "calculator" in offered:
            calculation = find_calculation(question)
            if calculation is not None:
                arguments = {"expression": calculation.expression}
                return ToolCall(_call_id(request, "calculator", arguments), "calculator", arguments)
        if "knowledge_search" in offered and query_words(question):
            query = " ".join(question.split())
            if len(query) > MAX_QUERY_CHARS:
                query = query[:MAX_QUERY_CHARS].rsplit(" ", 1)[0]
            arguments = {"query": query}
            return ToolCall(
                _call_id(request, "knowledge_search", arguments), "knowledge_search", arguments
            )
        return None

    # Step 2: the answer

    async def _answer_directly(
        self, request: ProviderRequest, question: str, offered: set[str]
    ) -> str:
        if _is_thanks(question):
            return gettext("You're welcome! Is there anything else I can help with?")
        if _is_greeting(question) or not query_words(question):
            return self._greeting(request, offered)
        if self.knowledge and "knowledge_search" not in offered:
            passages = await knowledge_search(question, self.knowledge)
            return _knowledge_answer(question, format_passages(passages, self.knowledge))
        return " ".join(
            [
                gettext(
                    "I run offline on the built-in local provider: I answer from this agent's "
                    "knowledge documents and tools without a language model, and none of them "
                    "fits this request."
                ),
                _suggest_real_model(),
            ]
        )

    def _greeting(self, request: ProviderRequest, offered: set[str]) -> str:
        system = next((m.content for m in request.messages if m.role == "system"), "")
        parts = [gettext("Hello!")]
        about = _introduction(system)
        if about:
            parts.append(about)
        if "knowledge_search" in offered or self.knowledge:
            parts.append(
                gettext("Ask me a question and I'll look it up in my knowledge documents.")
            )
        if "calculator" in offered:
            parts.append(gettext("I can also work out calculations for you."))
        if len(parts) == 1:
            parts.append(gettext("How can I help?"))
        return " ".join(parts)

    def _answer_from_tools(self, request: ProviderRequest) -> str:
        messages = request.messages
        start = len(messages)
        while start > 0 and messages[start - 1].role == "tool":
            start -= 1
        results = messages[start:]
        calls = {
            call.id: call
            for message in messages[:start]
            if message.role == "assistant"
            for call in message.tool_calls
        }
        question = next((m.content for m in reversed(messages) if m.role == "user"), "")
        sections = [
            _tool_section(result, calls.get(result.tool_call_id), question) for result in results
        ]
        return "\n\n".join(section for section in sections if section) or _not_found("")


def _tool_section(result: ChatMessage, call: ToolCall | None, question: str) -> str:
    name = result.name or (call.name if call else "")
    content = result.content.strip()
    if content.startswith(ERROR_PREFIX):
        problem = content[len(ERROR_PREFIX) :].rstrip(".")
        if name == "calculator":
            return gettext("I couldn't calculate that: %(problem)s.") % {"problem": problem}
        return gettext("The %(tool)s tool could not help: %(problem)s.") % {
            "tool": name or gettext("requested"),
            "problem": problem,
        }
    if name == "calculator":
        expression = str(call.arguments.get("expression", "")) if call else ""
        calculation = find_calculation(question)
        display = (
            calculation.display
            if calculation is not None and calculation.expression == expression
            else expression
        )
        return gettext("%(calculation)s is %(result)s.") % {
            "calculation": display or gettext("The result"),
            "result": _format_result(content),
        }
    if name == "knowledge_search":
        return _knowledge_answer(question, content)
    if name == "http_get":
        excerpt = content if len(content) <= 1500 else content[:1500].rsplit(" ", 1)[0] + " …"
        return gettext("Here is what I fetched:") + f"\n\n{excerpt}"
    return content


def _knowledge_answer(question: str, output: str) -> str:
    words = query_words(question)
    passages = parse_passages(output)
    relevant = [
        (title, text)
        for title, text in passages
        if _relevant(words, _matches(words, f"{title}\n{text}"))
    ]
    if not relevant:
        return _not_found(output, [title for title, _ in passages])

    # Lead with the single sentence that answers best, and quote its passage first.
    leads = [_lead_sentence(words, text) for _, text in relevant]
    best = max(range(len(relevant)), key=lambda i: (leads[i][1], -i))
    lead = leads[best][0]
    relevant.insert(0, relevant.pop(best))

    title, text = relevant[0]
    parts = [
        gettext("Here is what *%(title)s* says: %(lead)s") % {"title": title, "lead": lead}
        if lead
        else gettext("Here is what I found in *%(title)s*.") % {"title": title},
        gettext("From *%(title)s*:") % {"title": title} + "\n\n" + _to_markdown(text),
    ]
    quoted = len(text)
    for title, text in relevant[1:]:
        if quoted + len(text) > MAX_QUOTED_CHARS:
            break
        quoted += len(text)
        also = gettext("Also from *%(title)s*:") % {"title": title}
        parts.append(f"{also}\n\n{_to_markdown(text)}")
    return "\n\n".join(parts)


def _not_found(output: str, seen_titles: Sequence[str] = ()) -> str:
    parts = [gettext("I couldn't find anything about that in my knowledge documents.")]
    available = re.search(r"Documents available: (.+)\.$", output.strip())
    titles = [title.strip() for title in available.group(1).split(";")] if available else []
    titles = list(dict.fromkeys([*titles, *seen_titles]))
    if titles:
        listed = ", ".join(f"*{title}*" for title in titles[:8])
        parts.append(gettext("I can answer questions about: %(titles)s.") % {"titles": listed})
    else:
        parts.append(gettext("Try asking about a specific topic, in a few words."))
    parts.append(_suggest_real_model())
    return " ".join(parts)


def _suggest_real_model() -> str:
    return gettext(
        "For fuller, conversational answers, add an API key for a language model provider in "
        "this deployment's settings."
    )


def _is_greeting(text: str) -> bool:
    words = re.findall(r"[^\W_]+", text.lower())
    return (
        len(words) <= 5
        and all(word in _GREETING_WORDS.split() for word in words)
        and len(text) < 60
    )


def _is_thanks(text: str) -> bool:
    words = re.findall(r"[^\W\d_]+", text.lower())
    return (
        0 < len(words) <= 6
        and all(word in _THANKS_WORDS.split() for word in words)
        and bool(_THANKS_MARKERS & set(words))
    )


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
