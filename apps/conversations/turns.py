"""Streaming one reply: the engine's events become protocol events, deltas are coalesced (one
event per ~40 ms, not per token), and the reply row is written in batches and finalised.

Every transport (websocket, SSE, the OpenAI-compatible API) drives a reply through ``stream_reply``
with its own ``emit``; ``db`` runs a sync function in the tenant's schema (a consumer's ``db`` or
``sync_to_async`` inside a request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from django.utils.translation import gettext as _

from apps.conversations import services
from apps.conversations.services import Accepted
from apps.runtime.engine import InputRefused, ReplyRevised, run_turn
from apps.runtime.types import ProviderError, TextDelta, ToolCallRequested, ToolResult, Usage

logger = logging.getLogger(__name__)

COALESCE_SECONDS = 0.04
# The reply so far is stored every PERSIST_SECONDS or PERSIST_CHARS, whichever comes first, and
# in full at its end. Each write rewrites the whole text: more often costs the database without
# helping anyone (the sockets get every delta, and ``done`` carries the whole reply).
PERSIST_SECONDS = 2.0
PERSIST_CHARS = 4_000

Emit = Callable[[dict[str, Any]], Awaitable[None]]
Db = Callable[..., Awaitable[Any]]


def ack_event(accepted: Accepted, client_msg_id: str) -> dict[str, Any]:
    return {
        "type": "ack",
        "client_msg_id": client_msg_id,
        "conversation_id": accepted.conversation.pk,
        "message_id": accepted.message.pk,
        "reply_id": accepted.reply.pk,
        "duplicate": accepted.duplicate,
        "conversation_title": accepted.conversation.title,
    }


def message_event(message: Any) -> dict[str, Any]:
    """A stored message as the protocol shows it (history, resume, duplicates)."""
    return {
        "type": "message",
        "id": message.pk,
        "conversation_id": message.conversation_id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "reply_to": message.reply_to_id,
        "error": {"code": message.error_code, "message": message.error_message}
        if message.error_code
        else None,
        "created_at": message.created_at.isoformat(),
    }


_STOP = object()


class _Until:
    """The turn's events, then ``_STOP`` at their end or as soon as ``cancelled`` is set: a
    provider can stay silent for a long time (a slow first token, a hung stream), and a cancel
    must not wait for it. One task reads the events for the whole reply, a little ahead of it
    (a reply is bounded by its token limit), and one waiter on the cancel stops that task: per
    event, only a queue's handover (replies stream dozens of events each). A failure of the
    turn is raised by ``next`` in its place among the events."""

    def __init__(self, events: AsyncIterator[Any], cancelled: asyncio.Event) -> None:
        self.events, self.cancelled = events, cancelled
        self.queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None
        self.stop: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        try:
            async for event in self.events:
                self.queue.put_nowait((event, None))
        except BaseException as error:
            # Whatever ends the reading ends the wait for it too (the cancel waiter's own stop
            # included: ``next`` then sees the cancel first).
            self.queue.put_nowait((None, error))
            if not isinstance(error, Exception):
                raise
        else:
            self.queue.put_nowait((_STOP, None))

    async def _stop_when_cancelled(self) -> None:
        await self.cancelled.wait()
        if self.reader is not None:
            self.reader.cancel()
        self.queue.put_nowait((_STOP, None))

    async def next(self) -> Any:
        if self.cancelled.is_set():
            return _STOP
        if self.reader is None:
            self.reader = asyncio.ensure_future(self._read())
            self.stop = asyncio.ensure_future(self._stop_when_cancelled())
        event, error = await self.queue.get()
        if self.cancelled.is_set():
            return _STOP
        if isinstance(error, asyncio.CancelledError):
            # Not the user's cancel: something stopped the turn under it; the reply fails.
            raise RuntimeError("the turn's events stopped before their end") from error
        if error is not None:
            raise error
        return event

    async def aclose(self) -> None:
        """Stop reading (the events can be closed then: nothing iterates them any more)."""
        for task in (self.stop, self.reader):
            if task is not None and not task.done():
                task.cancel()
        for task in (self.stop, self.reader):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def stream_reply(
    accepted: Accepted,
    *,
    emit: Emit,
    db: Db,
    user_id: int | None,
    cancelled: asyncio.Event | None = None,
    finish: Callable[..., Awaitable[None]] | None = None,
) -> str:
    """Run the reply of ``accepted`` to its end; returns its final status. ``finish`` stores the
    finished reply (``services.reply_finish``'s arguments; through ``db`` by default)."""
    reply_id = accepted.reply.pk
    spec = accepted.spec
    if spec is None:  # a guardrail answered, or a duplicate: nothing to run
        await emit(
            {
                "type": "done",
                "reply_id": reply_id,
                "content": accepted.reply.content,
                "usage": None,
                "status": accepted.reply.status,
            }
        )
        return str(accepted.reply.status)
    cancelled = cancelled or asyncio.Event()
    text: list[str] = []
    pending: list[str] = []
    tools: list[dict[str, Any]] = []
    failures: list[Any] = []
    usage: Usage | None = None
    last_persist = time.monotonic()
    last_emit = 0.0  # the first text goes out at once: the wait for it is what people notice
    persisted_chars = 0
    seq = 0

    async def flush(force: bool = False, persist: bool = True) -> None:
        """Emit the pending text (coalesced), and store the reply so far now and then; at the end
        (``persist=False``) the final write stores it."""
        nonlocal last_emit, last_persist, persisted_chars, seq
        now = time.monotonic()
        if pending and (force or now - last_emit >= COALESCE_SECONDS):
            seq += 1
            chunk = "".join(pending)
            pending.clear()
            last_emit = now
            await emit({"type": "delta", "reply_id": reply_id, "seq": seq, "text": chunk})
        if not persist:
            return
        content_length = sum(map(len, text))
        if force or (
            now - last_persist >= PERSIST_SECONDS
            or content_length - persisted_chars >= PERSIST_CHARS
        ):
            if content_length != persisted_chars:
                await db(services.reply_progress, reply_id=reply_id, content="".join(text))
                persisted_chars = content_length
            last_persist = now

    def on_failure(error: ProviderError, attempt: int, provider: str) -> None:
        failures.append((error, attempt, provider))

    events = run_turn(spec, accepted.history, accepted.message.content, on_failure=on_failure)
    until = _Until(events, cancelled)
    revised: str | None = None
    try:
        while (event := await until.next()) is not _STOP:
            if isinstance(event, TextDelta):
                text.append(event.text)
                pending.append(event.text)
                await flush()
            elif isinstance(event, ToolCallRequested):
                await flush(force=True)
                await emit(
                    {
                        "type": "tool",
                        "reply_id": reply_id,
                        "stage": "call",
                        "name": event.call.name,
                        "arguments": event.call.arguments,
                    }
                )
            elif isinstance(event, ToolResult):
                tools.append(
                    {
                        "name": event.call.name,
                        "arguments": event.call.arguments,
                        "error": event.error,
                    }
                )
                await emit(
                    {
                        "type": "tool",
                        "reply_id": reply_id,
                        "stage": "result",
                        "name": event.call.name,
                        "error": event.error,
                        "output": event.output[:2_000],
                    }
                )
            elif isinstance(event, ReplyRevised):
                revised = event.text
            elif isinstance(event, InputRefused):
                pass  # already handled when the message was accepted
            elif isinstance(event, Usage):
                usage = event
    except ProviderError as error:
        await until.aclose()
        await flush(force=True, persist=False)
        await db(
            services.reply_fail,
            reply_id=reply_id,
            content="".join(text),
            error=error,
            code=error.kind,
            message=str(error.message),
            user_id=user_id,
            failures=failures,
        )
        await emit(
            {
                "type": "error",
                "reply_id": reply_id,
                "code": error.kind,
                "message": _(
                    "The agent's provider failed (%(kind)s). Your message is kept; try again."
                )
                % {"kind": error.kind},
                "retryable": True,
            }
        )
        return "failed"
    except Exception:
        logger.exception("reply %s failed", reply_id)
        await until.aclose()  # no more provider or tool work for a reply that failed
        await db(
            services.reply_fail,
            reply_id=reply_id,
            content="".join(text),
            error=None,
            code="internal",
            message="internal error",
            user_id=user_id,
            failures=failures,
        )
        await emit(
            {
                "type": "error",
                "reply_id": reply_id,
                "code": "internal",
                "message": _("Something went wrong on our side. Your message is kept; try again."),
                "retryable": True,
            }
        )
        return "failed"
    finally:
        await until.aclose()
        await events.aclose()
    if cancelled.is_set():
        await flush(force=True, persist=False)
        await db(services.reply_cancel, reply_id=reply_id, content="".join(text))
        await emit(
            {
                "type": "done",
                "reply_id": reply_id,
                "status": "cancelled",
                "usage": None,
                "content": "".join(text),
            }
        )
        return "cancelled"
    await flush(force=True, persist=False)
    content = revised if revised is not None else "".join(text)
    await (finish or partial(db, services.reply_finish))(
        reply_id=reply_id,
        deployment_id=accepted.conversation.deployment_id,
        content=content,
        usage=usage,
        tools=tools,
        user_id=user_id,
        failures=failures,
    )
    if revised is not None:
        await emit({"type": "revised", "reply_id": reply_id, "content": revised})
    await emit(
        {
            "type": "done",
            "reply_id": reply_id,
            "status": "complete",
            "content": content,
            "usage": {
                "provider": usage.provider,
                "model": usage.model,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
            }
            if usage
            else None,
            "latency_ms": usage.latency_ms if usage else None,
        }
    )
    return "complete"
