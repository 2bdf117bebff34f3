"""A small, real OpenAI-compatible server for tests, and the scripted HTTP server it is built on.

`FakeOpenAI` serves ``POST /v1/chat/completions`` over real HTTP on 127.0.0.1 from a background
thread, so `OpenAIProvider` and the official ``openai`` SDK run unpatched against it::

    with FakeOpenAI() as server:
        server.script(Reply(text=("Hel", "lo")), Reply.error_reply(429, retry_after="1"))
        provider = OpenAIProvider("sk-test", base_url=server.base_url)

Each request takes the next scripted `Reply` (an exhausted script answers ``Reply()``, a short
text). Streaming requests get ``text/event-stream`` chunks ending with a usage chunk (when
``stream_options.include_usage`` is set) and ``data: [DONE]``; others get one JSON completion.
A reply can also fail with an HTTP error (JSON body, optional ``Retry-After``), stop the
stream with a content filter or a refusal, send an error event mid-stream, or hang before the
first byte or after some chunks until the server stops. What arrived is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

HOST = "127.0.0.1"
HANG_LIMIT = 30.0  # seconds a hanging reply waits at most if the server is never stopped


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # decoded JSON, or the raw text if it was not JSON


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: ScriptedServer) -> None:
        self.owner = owner
        super().__init__((HOST, 0), ScriptedHandler)


class ScriptedHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers at shutdown

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        request = Recorded(
            "POST", self.path, {key.lower(): value for key, value in self.headers.items()}, body
        )
        owner = self.server.owner
        try:
            owner._serve(self, request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout under test): nothing to answer
        except Exception:
            owner.server_errors.append(traceback.format_exc())

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: ``requests`` records what arrived."""


class ScriptedServer:
    """A threaded HTTP server on a free port answering from a script; subclasses speak a protocol.

    ``server_errors`` holds tracebacks of exceptions raised while answering (a test can assert
    it is empty); ``release()`` frees hanging replies (``stop`` does too).
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.server_errors: list[str] = []
        self._script: deque[Any] = deque()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("already running")
        self._released.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self._released.set()
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not running")
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    def script(self, *replies: Any) -> None:
        """Queue replies, answered in order by the next requests."""
        with self._lock:
            self._script.extend(replies)

    def release(self) -> None:
        self._released.set()

    def hits(self, path: str | None = None) -> int:
        return sum(1 for request in self.requests if path is None or request.path == path)

    def _next(self, default: Any) -> Any:
        with self._lock:
            return self._script.popleft() if self._script else default

    def _serve(self, handler: ScriptedHandler, request: Recorded) -> None:
        raise NotImplementedError

    # Helpers for subclasses

    def _hang(self) -> None:
        self._released.wait(HANG_LIMIT)

    @staticmethod
    def _send_json(
        handler: ScriptedHandler, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    @staticmethod
    def _start_events(handler: ScriptedHandler, headers: dict[str, str] | None = None) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()

    @staticmethod
    def _send_event(handler: ScriptedHandler, data: str, event: str | None = None) -> None:
        frame = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
        handler.wfile.write(frame.encode())
        handler.wfile.flush()


# The OpenAI protocol


@dataclass(frozen=True)
class ToolCallReply:
    """A tool call as the server streams it: ``fragments`` of the JSON arguments, in order."""

    name: str
    fragments: tuple[str, ...]
    id: str = ""


@dataclass(frozen=True)
class Reply:
    """One scripted answer of `FakeOpenAI`."""

    text: tuple[str, ...] = ("Hello", " there")
    tool_calls: tuple[ToolCallReply, ...] = ()
    finish_reason: str | None = None  # default: "tool_calls" with tool calls, else "stop"
    refusal: str | None = None
    prompt_tokens: int = 11
    completion_tokens: int = 7
    status: int = 200
    error: dict[str, Any] | None = None  # the body's "error" object for a status >= 400
    headers: dict[str, str] = field(default_factory=dict)
    hang_before: bool = False  # accept the request, never answer
    hang_after: int | None = None  # send this many stream chunks, then hang
    error_event_after: int | None = None  # send this many chunks, then an error event
    end_early: bool = False  # close the stream with neither finish_reason nor [DONE]
    report_usage: bool = True  # False: ignore stream_options, as some compatible servers do

    @classmethod
    def error_reply(
        cls,
        status: int,
        message: str = "scripted failure",
        *,
        type: str = "server_error",
        code: str | None = None,
        retry_after: str | None = None,
    ) -> Reply:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls(
            status=status,
            error={"message": message, "type": type, "param": None, "code": code},
            headers=headers,
        )

    @classmethod
    def tools(cls, *calls: ToolCallReply, text: tuple[str, ...] = ()) -> Reply:
        return cls(text=text, tool_calls=calls)

    @classmethod
    def hang(cls) -> Reply:
        return cls(hang_before=True)


class FakeOpenAI(ScriptedServer):
    """``POST /v1/chat/completions`` as OpenAI answers it; ``base_url`` is what the SDK needs."""

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    @property
    def completions(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    def _serve(self, handler: ScriptedHandler, request: Recorded) -> None:
        self.requests.append(request)
        if request.path != "/v1/chat/completions":
            self._send_json(
                handler, 404, {"error": {"message": "not found", "type": "invalid_request_error"}}
            )
            return
        reply: Reply = self._next(Reply())
        if reply.hang_before:
            self._hang()
            return
        if reply.status >= 400:
            self._send_json(handler, reply.status, {"error": reply.error or {}}, reply.headers)
            return
        body = request.body if isinstance(request.body, dict) else {}
        model = str(body.get("model", "gpt-test"))
        if not body.get("stream"):
            self._send_json(handler, 200, _completion(reply, model), reply.headers)
            return
        self._start_events(handler, reply.headers)
        include_usage = reply.report_usage and bool(
            (body.get("stream_options") or {}).get("include_usage")
        )
        for sent, chunk in enumerate(_chunks(reply, model, include_usage=include_usage)):
            if reply.hang_after is not None and sent == reply.hang_after:
                self._hang()
                return
            if reply.error_event_after is not None and sent == reply.error_event_after:
                error = reply.error or {
                    "message": "The server had an error",
                    "type": "server_error",
                }
                self._send_event(handler, json.dumps({"error": error}))
                return
            if (
                reply.end_early
                and chunk.get("choices")
                and chunk["choices"][0].get("finish_reason")
            ):
                return
            self._send_event(handler, json.dumps(chunk))
        self._send_event(handler, "[DONE]")


def _finish_reason(reply: Reply) -> str:
    if reply.finish_reason is not None:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def _chunks(reply: Reply, model: str, *, include_usage: bool) -> Iterator[dict[str, Any]]:
    yield _chunk(model, {"role": "assistant", "content": ""})
    for piece in reply.text:
        yield _chunk(model, {"content": piece})
    if reply.refusal is not None:
        yield _chunk(model, {"refusal": reply.refusal})
    for index, call in enumerate(reply.tool_calls):
        first, *rest = call.fragments or ("",)
        yield _chunk(
            model,
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call.id or f"call_{index}",
                        "type": "function",
                        "function": {"name": call.name, "arguments": first},
                    }
                ]
            },
        )
        for fragment in rest:
            yield _chunk(
                model, {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
            )
    yield _chunk(model, {}, _finish_reason(reply))
    if include_usage:
        yield {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [],
            "usage": _usage(reply),
        }


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(reply.text) or None,
        "refusal": reply.refusal,
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id or f"call_{index}",
                "type": "function",
                "function": {"name": call.name, "arguments": "".join(call.fragments)},
            }
            for index, call in enumerate(reply.tool_calls)
        ]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(reply),
            }
        ],
        "usage": _usage(reply),
    }
