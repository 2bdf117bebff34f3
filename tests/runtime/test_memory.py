"""The conversation window: token estimates and fitting a conversation into a budget."""

from __future__ import annotations

from apps.runtime.memory import (
    TRUNCATION_MARK,
    Window,
    count_message_tokens,
    count_messages_tokens,
    count_tokens,
    fit_window,
    truncate_middle,
)
from apps.runtime.types import ChatMessage, ToolCall

SYSTEM = ChatMessage("system", "You are the IT helpdesk agent. Be brief and friendly.")


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage("assistant", text)


def tool_round(call_id: str, result: str) -> list[ChatMessage]:
    call = ToolCall(call_id, "knowledge_search", {"query": "vpn"})
    return [
        ChatMessage("assistant", "", tool_calls=(call,)),
        ChatMessage("tool", result, tool_call_id=call_id, name="knowledge_search"),
    ]


def words(count: int, word: str = "word") -> str:
    return " ".join([word] * count)


def test_token_estimates_are_deterministic_and_roughly_four_characters_each():
    english = (
        "VPN will not connect. First check that the internet works without the VPN by opening "
        "any public website. If there is no internet, fix the Wi-Fi or network first."
    )

    assert count_tokens("") == 0
    assert count_tokens("hello") == 2
    assert count_tokens("12,345") == 3  # "12", ",", "345"
    assert count_tokens(english) == count_tokens(english)
    assert len(english) / 5 <= count_tokens(english) <= len(english) / 3
    assert count_tokens("你好世界") == 4


def test_message_tokens_include_the_framing_and_tool_calls():
    plain = user("hello")
    call = tool_round("c1", "result")[0]

    assert count_message_tokens(plain) == count_tokens("hello") + 4
    assert count_message_tokens(call) > count_message_tokens(assistant(""))
    assert count_messages_tokens([plain, plain]) == 2 * count_message_tokens(plain)


def test_a_conversation_that_fits_is_kept_whole():
    history = [user("hi"), assistant("Hello!"), user("My VPN fails")]

    window = fit_window(SYSTEM, history, budget=1000, reserve_for_reply=200)

    assert isinstance(window, list)
    assert window == [SYSTEM, *history]
    assert (window.dropped, window.truncated) == (0, False)


def test_the_oldest_messages_are_dropped_first():
    history = [user(words(50, f"old{i}")) if i % 2 == 0 else assistant(words(50)) for i in range(8)]
    history.append(user("and now?"))
    budget = 300

    window = fit_window(SYSTEM, history, budget=budget, reserve_for_reply=50)

    assert window[0] == SYSTEM
    assert window[-1] == user("and now?")
    assert window[1:] == history[-len(window) + 1 :]
    assert window.dropped == len(history) - (len(window) - 1) > 0
    assert window.tokens <= budget - 50


def test_the_window_starts_with_a_user_message():
    history = [user(words(100)), assistant(words(20)), assistant(words(20)), user("next")]

    window = fit_window(SYSTEM, history, budget=140, reserve_for_reply=0)

    assert [m.role for m in window] == ["system", "user"]
    assert window.dropped == 3


def test_a_tool_call_is_never_separated_from_its_results():
    old_round = tool_round("c1", words(60, "passage"))
    history = [user("vpn?"), *old_round, assistant("Try this."), user("printer?")]
    fits_without_the_round = (
        count_messages_tokens([SYSTEM, assistant("Try this."), user("printer?")]) + 10
    )

    window = fit_window(SYSTEM, history, budget=fits_without_the_round, reserve_for_reply=0)

    # The round did not fit: neither its call nor its result is kept, and the lone assistant
    # reply left at the start goes too.
    assert window == [SYSTEM, user("printer?")]
    assert window.dropped == 4

    roomy = fit_window(SYSTEM, history, budget=10_000, reserve_for_reply=0)
    assert roomy == [SYSTEM, *history]


def test_the_current_turns_tool_rounds_are_always_kept():
    current = [user("vpn?"), *tool_round("c1", "a"), *tool_round("c2", "b")]
    history = [user(words(200)), assistant(words(200)), *current]

    window = fit_window(
        SYSTEM, history, budget=count_messages_tokens([SYSTEM, *current]), reserve_for_reply=0
    )

    assert window == [SYSTEM, *current]
    assert window.dropped == 2


def test_an_oversized_latest_message_is_truncated_from_the_middle():
    message = user("START " + words(2000, "filler") + " what is the question? END")

    window = fit_window(SYSTEM, [user("earlier"), message], budget=500, reserve_for_reply=100)

    kept = window[-1].content
    assert window.truncated
    assert window.dropped == 1
    assert kept.startswith("START filler")
    assert kept.endswith("what is the question? END")
    assert TRUNCATION_MARK in kept
    assert window.tokens <= 400


def test_a_huge_tool_result_is_cut_before_the_question():
    question = user("What does the page say about pricing?")
    call, result = tool_round("c1", words(5000, "page"))

    window = fit_window(SYSTEM, [question, call, result], budget=600, reserve_for_reply=100)

    assert window[1] == question
    assert window[2] == call
    assert TRUNCATION_MARK in window[3].content
    assert window.tokens <= 500


def test_truncate_middle_keeps_short_text_and_fits_long_text():
    assert truncate_middle("short", 10) == "short"

    text = "head " + words(500) + " tail"
    cut = truncate_middle(text, 60)

    assert count_tokens(cut) <= 60
    assert cut.startswith("head")
    assert cut.endswith("tail")


def test_a_window_is_a_list_with_a_report():
    window = Window([SYSTEM], dropped=2, truncated=False)

    assert window == [SYSTEM]
    assert (window.dropped, window.truncated) == (2, False)
    assert window.tokens == count_message_tokens(SYSTEM)
