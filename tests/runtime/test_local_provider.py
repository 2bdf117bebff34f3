"""The built-in ``local`` provider: every shipped blueprint answers a sensible question through
the same tool-calling protocol as the remote providers, offline and deterministically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from apps.runtime.providers.local import LocalProvider, find_calculation
from apps.runtime.tools import KnowledgeDoc, ToolContext, run_tool, tool_specs
from apps.runtime.types import (
    BadRequest,
    ChatMessage,
    Event,
    Provider,
    ProviderRequest,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    Usage,
)

BLUEPRINTS = Path(__file__).resolve().parents[2] / "blueprints"

# slug: (question, the document the answer must cite, a phrase the answer must contain)
QUESTIONS = {
    "code-reviewer": (
        "What should I check for SQL injection in a code review?",
        "Security review checklist",
        "parameterised queries",
    ),
    "compliance-checker": (
        "How long do we have to answer a data subject access request?",
        "Data subject rights and deadlines",
        "within one month",
    ),
    "content-writer": (
        "How long should a meta description be?",
        "SEO guidelines",
        "140 to 155 characters",
    ),
    "customer-support-assistant": (
        "How long do I have to return an item?",
        "Returns and refunds",
        "within 30 days",
    ),
    "data-analyst": (
        "How do I calculate CAGR?",
        "Growth rates, compounding and CAGR",
        "CAGR = (end value / start value)",
    ),
    "hr-policy-qa": (
        "How many days of annual leave do I get?",
        "Annual leave and public holidays",
        "28 days of paid annual leave",
    ),
    "it-helpdesk": (
        "How do I connect to the VPN from home?",
        "VPN connection problems",
        "the VPN cannot connect",
    ),
    "meeting-summariser": (
        "How should I write action items in the minutes?",
        "Action item rules",
        "exactly one owner",
    ),
    "onboarding-buddy": (
        "What happens in my first week?",
        "Your first week, day by day",
        "check-in with your manager",
    ),
    "sales-email-writer": (
        "How do I write a good subject line?",
        "Subject lines",
        "under 50 characters",
    ),
    "sql-helper": (
        "What is the difference between a LEFT JOIN and an INNER JOIN?",
        "Joins explained with examples",
        "INNER JOIN returns only rows that have a match",
    ),
    "translator": (
        "How should dates and numbers be formatted for German?",
        "Locale formatting conventions",
        "German: 14. März 2025",
    ),
}


def _blueprint(slug: str) -> dict[str, Any]:
    return yaml.safe_load((BLUEPRINTS / f"{slug}.yaml").read_text())["version"]


def _documents(version: dict[str, Any]) -> tuple[KnowledgeDoc, ...]:
    return tuple(KnowledgeDoc(doc["title"], doc["content"]) for doc in version["knowledge"])


def _request(version: dict[str, Any], messages: list[ChatMessage]) -> ProviderRequest:
    return ProviderRequest(
        model=version["model"],
        messages=tuple(messages),
        tools=tool_specs(version.get("tools", [])),
        max_output_tokens=version["parameters"].get("max_output_tokens"),
    )


async def _events(provider: LocalProvider, request: ProviderRequest) -> list[Event]:
    return [event async for event in provider.stream(request)]


def _check_protocol(events: list[Event], request: ProviderRequest) -> Usage:
    usage = events[-1]
    assert isinstance(usage, Usage)
    assert sum(isinstance(event, Usage) for event in events) == 1
    assert (usage.provider, usage.model) == ("local", request.model)
    assert usage.input_tokens > 0
    assert usage.output_tokens > 0
    assert usage.latency_ms >= 0
    return usage


async def _converse(slug: str, question: str) -> tuple[list[ToolCall], str, Usage]:
    """One turn as the engine runs it: provider, tools, provider again, until it answers."""
    version = _blueprint(slug)
    context = ToolContext(enabled=frozenset(version["tools"]), documents=_documents(version))
    messages = [ChatMessage("system", version["instructions"]), ChatMessage("user", question)]
    provider = LocalProvider()
    calls: list[ToolCall] = []
    for _ in range(3):
        request = _request(version, messages)
        events = await _events(provider, request)
        usage = _check_protocol(events, request)
        requested = [event.call for event in events if isinstance(event, ToolCallRequested)]
        if not requested:
            assert usage.finish_reason == "stop"
            deltas = [event.text for event in events if isinstance(event, TextDelta)]
            return calls, "".join(deltas), usage
        assert usage.finish_reason == "tool_calls"
        assert not any(isinstance(event, TextDelta) for event in events)
        calls.extend(requested)
        messages.append(ChatMessage("assistant", "", tool_calls=tuple(requested)))
        for call in requested:
            output = await run_tool(call, context)
            messages.append(ChatMessage("tool", output.text, tool_call_id=call.id, name=call.name))
    raise AssertionError("the local provider kept asking for tools")


def test_the_local_provider_is_a_provider():
    provider: Provider = LocalProvider()  # checked by mypy against the protocol

    assert provider.name == "local"


def test_every_shipped_blueprint_has_a_question():
    assert set(QUESTIONS) == {path.stem for path in BLUEPRINTS.glob("*.yaml")}


@pytest.mark.usefixtures("committed")
@pytest.mark.parametrize("slug", sorted(QUESTIONS))
async def test_every_shipped_blueprint_answers_a_sensible_question(slug):
    question, title, phrase = QUESTIONS[slug]

    calls, answer, _ = await _converse(slug, question)

    assert [(call.name, call.arguments) for call in calls] == [
        ("knowledge_search", {"query": question})
    ]
    assert answer.startswith("Here is what")
    assert f"From *{title}*:" in answer
    assert phrase in answer


@pytest.mark.usefixtures("committed")
async def test_the_data_analyst_calculates_with_the_calculator():
    calls, answer, _ = await _converse("data-analyst", "What is 15% of 2,400?")

    assert [(call.name, call.arguments) for call in calls] == [
        ("calculator", {"expression": "15% of 2400"})
    ]
    assert answer == "15% of 2,400 is 360."


@pytest.mark.usefixtures("committed")
@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("(1200-950)/950*100", "(1200-950)/950*100 is about 26.32 (26.31578947 before rounding)."),
        (
            "What's the compound growth of 5% over 3 years on 1000?",
            "1000 growing by 5% per year for 3 years is about 1,157.63 (1157.625 before rounding).",
        ),
        ("what is 1/0?", "I couldn't calculate that: division by zero."),
    ],
)
async def test_calculations_are_stated_as_answers(question, answer):
    calls, text, _ = await _converse("data-analyst", question)

    assert [call.name for call in calls] == ["calculator"]
    assert text == answer


@pytest.mark.usefixtures("committed")
async def test_an_unanswerable_question_gets_an_honest_answer():
    calls, answer, _ = await _converse("it-helpdesk", "What's the weather like in Paris?")

    assert [call.name for call in calls] == ["knowledge_search"]
    assert answer.startswith("I couldn't find anything about that in my knowledge documents.")
    assert "*VPN connection problems*" in answer
    assert "add an API key" in answer


@pytest.mark.usefixtures("committed")
async def test_answers_are_deterministic_and_streamed_in_pieces():
    version = _blueprint("it-helpdesk")
    first = await _converse("it-helpdesk", QUESTIONS["it-helpdesk"][0])
    second = await _converse("it-helpdesk", QUESTIONS["it-helpdesk"][0])

    assert first[0] == second[0]  # the same tool call ids too
    assert first[1] == second[1]

    messages = [ChatMessage("system", version["instructions"]), ChatMessage("user", "hello")]
    events = await _events(LocalProvider(), _request(version, messages))
    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert len(deltas) > 2
    assert all(deltas)


async def test_a_greeting_is_answered_with_an_introduction_from_the_instructions():
    version = _blueprint("it-helpdesk")
    messages = [ChatMessage("system", version["instructions"]), ChatMessage("user", "Hi there!")]
    request = _request(version, messages)

    events = await _events(LocalProvider(), request)

    _check_protocol(events, request)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == (
        "Hello! I'm the IT helpdesk agent for the organisation named in this deployment's "
        "settings. Ask me a question and I'll look it up in my knowledge documents."
    )


async def test_thanks_are_acknowledged_without_a_tool():
    version = _blueprint("data-analyst")
    request = _request(version, [ChatMessage("user", "Thanks a lot!")])

    events = await _events(LocalProvider(), request)

    assert [type(e) for e in events] == [TextDelta, TextDelta, Usage]
    assert events[0].text.startswith("You're welcome!")


async def test_without_tools_or_knowledge_it_says_what_it_cannot_do():
    request = ProviderRequest(model="local", messages=(ChatMessage("user", "Write me a poem"),))

    events = await _events(LocalProvider(), request)

    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "none of them fits this request" in text
    assert "add an API key" in text


@pytest.mark.usefixtures("committed")
async def test_without_the_search_tool_it_searches_its_own_knowledge():
    version = _blueprint("customer-support-assistant")
    provider = LocalProvider(knowledge=_documents(version))
    request = ProviderRequest(
        model="local", messages=(ChatMessage("user", "When will I get my refund?"),)
    )

    events = await _events(provider, request)

    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "From *Returns and refunds*:" in text
    assert "Card refunds usually appear within 5 to 10 working days" in text


@pytest.mark.usefixtures("committed")
async def test_a_reply_over_the_output_limit_stops_with_finish_reason_length():
    version = _blueprint("it-helpdesk")
    calls, full, _ = await _converse("it-helpdesk", QUESTIONS["it-helpdesk"][0])
    context = ToolContext(enabled=frozenset({"knowledge_search"}), documents=_documents(version))
    messages = [
        ChatMessage("user", QUESTIONS["it-helpdesk"][0]),
        ChatMessage("assistant", "", tool_calls=tuple(calls)),
        ChatMessage(
            "tool",
            (await run_tool(calls[0], context)).text,
            tool_call_id=calls[0].id,
            name="knowledge_search",
        ),
    ]
    request = ProviderRequest(model="local", messages=tuple(messages), max_output_tokens=40)

    events = await _events(LocalProvider(), request)

    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert full.startswith(text)
    assert len(text) < len(full)
    assert events[-1].finish_reason == "length"
    assert events[-1].output_tokens <= 40


async def test_a_request_not_ending_with_a_user_or_tool_message_is_refused():
    request = ProviderRequest(model="local", messages=(ChatMessage("assistant", "Hello"),))

    with pytest.raises(BadRequest, match="must be from the user or a tool"):
        await _events(LocalProvider(), request)


@pytest.mark.parametrize(
    ("question", "expression"),
    [
        ("What is 12% of 4,500?", "12% of 4500"),
        ("what's 15 percent of 2400", "15% of 2400"),
        ("(1200-950)/950*100", "(1200-950)/950*100"),
        ("Can you work out 3 × (4 + 5) for me?", "3 × (4 + 5)"),
        ("sqrt(2) * 10", "sqrt(2) * 10"),
        ("compound growth of 5% over 3 years on 1000", "1000 * (1 + 5%) ** 3"),
        ("10,000 customers growing 3% per month for 12 months", "10000 * (1 + 3%) ** 12"),
    ],
)
def test_arithmetic_is_found_in_a_question(question, expression):
    calculation = find_calculation(question)

    assert calculation is not None
    assert calculation.expression == expression


@pytest.mark.parametrize(
    "question",
    [
        "How do I calculate CAGR?",
        "Delivery takes 2-4 days, right?",
        "What happened on 2024-01-15?",
        "Call +44 20 7946 0958",
        "Is version 1.2.3 supported?",
        "What is the difference between 4% and 5%?",
        "hello",
    ],
)
def test_numbers_that_are_not_arithmetic_are_left_to_knowledge_search(question):
    assert find_calculation(question) is None
