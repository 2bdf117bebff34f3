"""A small, real Anthropic Messages API server for tests.

`FakeAnthropic` serves ``POST /v1/messages`` over real HTTP on 127.0.0.1, so `AnthropicProvider`
and the official ``anthropic`` SDK run unpatched against it::

    with FakeAnthropic() as server:
        server.script(Message(text=("Hi",)), Message.error_reply(529, "overloaded_error"))
        provider = AnthropicProvider("sk-ant-test", base_url=server.base_url)

Streaming requests get the documented event sequence (``message_start``, ``content_block_start``
/ ``content_block_delta`` (``text_delta``, ``input_json_delta``) / ``content_block_stop``,
``ping``, ``message_delta`` with the stop reason and output tokens, ``message_stop``); others one
JSON message. Errors are ``{"type": "error", "error": {"type": ..., "message": ...}}`` with the
status the API uses and an optional ``retry-after`` header; a reply can also send an ``error``
event mid-stream, or hang before the first byte or after some events. Built on the same
`ScriptedServer` as `FakeOpenAI`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.runtime.fake_openai import Recorded, ScriptedHandler, ScriptedServer

__all__ = ["FakeAnthropic", "Message", "ToolUse"]


@dataclass(frozen=True)
class ToolUse:
    """A ``tool_use`` block as streamed: ``fragments`` of its JSON input, in order."""

    name: str
    fragments: tuple[str, ...]
    id: str = ""


@dataclass(frozen=True)
class Message:
    """One scripted answer of `FakeAnthropic`."""

    text: tuple[str, ...] = ("Hello", " there")
    tool_uses: tuple[ToolUse, ...] = ()
    stop_reason: str | None = None  # default: "tool_use" with tool uses, else "end_turn"
    input_tokens: int = 21
    cache_read_input_tokens: int = 0
    output_tokens: int = 9
    status: int = 200
    error_type: str = ""
    error_message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hang_before: bool = False
    hang_after: int | None = None  # send this many events, then hang
    error_event_after: int | None = None  # send this many events, then an error event
    end_early: bool = False  # close the stream before message_stop

    @classmethod
    def error_reply(
        cls,
        status: int,
        type: str,
        message: str = "scripted failure",
        *,
        retry_after: str | None = None,
    ) -> Message:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return cls(status=status, error_type=type, error_message=message, headers=headers)

    @classmethod
    def tools(cls, *uses: ToolUse, text: tuple[str, ...] = ()) -> Message:
        return cls(text=text, tool_uses=uses)

    @classmethod
    def hang(cls) -> Message:
        return cls(hang_before=True)


class FakeAnthropic(ScriptedServer):
    """``POST /v1/messages`` as Anthropic answers it; ``base_url`` is what the SDK needs."""

    @property
    def base_url(self) -> str:
        return self.origin

    @property
    def messages(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/v1/messages"]

    def _serve(self, handler: ScriptedHandler, request: Recorded) -> None:
        self.requests.append(request)
        request_id = {"request-id": f"req_fake_{len(self.requests)}"}
        if request.path != "/v1/messages":
            self._send_json(handler, 404, _error("not_found_error", "Not found"), request_id)
            return
        reply: Message = self._next(Message())
        if reply.hang_before:
            self._hang()
            return
        if reply.status >= 400:
            self._send_json(
                handler,
                reply.status,
                _error(reply.error_type, reply.error_message),
                {**request_id, **reply.headers},
            )
            return
        body = request.body if isinstance(request.body, dict) else {}
        model = str(body.get("model", "claude-test"))
        if not body.get("stream"):
            self._send_json(handler, 200, _message(reply, model), request_id)
            return
        self._start_events(handler, {**request_id, **reply.headers})
        for sent, (name, data) in enumerate(_events(reply, model)):
            if reply.hang_after is not None and sent == reply.hang_after:
                self._hang()
                return
            if reply.error_event_after is not None and sent == reply.error_event_after:
                error = _error(
                    reply.error_type or "overloaded_error", reply.error_message or "Overloaded"
                )
                self._send_event(handler, json.dumps(error), event="error")
                return
            if reply.end_early and name == "message_stop":
                return
            self._send_event(handler, json.dumps(data), event=name)


def _error(type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type, "message": message}}


def _stop_reason(reply: Message) -> str:
    if reply.stop_reason is not None:
        return reply.stop_reason
    return "tool_use" if reply.tool_uses else "end_turn"


def _usage(reply: Message, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": reply.cache_read_input_tokens,
        "output_tokens": output_tokens,
    }


def _events(reply: Message, model: str) -> Iterator[tuple[str, dict[str, Any]]]:
    start = _message(reply, model)
    start.update(content=[], stop_reason=None, usage=_usage(reply, 1))
    yield "message_start", {"type": "message_start", "message": start}
    index = 0
    if reply.text:
        yield (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
        yield "ping", {"type": "ping"}
        for piece in reply.text:
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
        index += 1
    for use in reply.tool_uses:
        yield (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {
                    "type": "tool_use",
                    "id": use.id or f"toolu_{index:02d}",
                    "name": use.name,
                    "input": {},
                },
            },
        )
        for fragment in use.fragments:
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": fragment},
                },
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
        index += 1
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _message(reply: Message, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": "".join(reply.text)})
    for position, use in enumerate(reply.tool_uses, start=len(content)):
        content.append(
            {
                "type": "tool_use",
                "id": use.id or f"toolu_{position:02d}",
                "name": use.name,
                "input": json.loads("".join(use.fragments) or "{}"),
            }
        )
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
        "usage": _usage(reply, reply.output_tokens),
    }
