"""Benchmark: concurrent chat websocket conversations, the platform against a bare Channels echo.

Target (2 cores, the offline ``local`` provider): 500 concurrent websocket conversations sending
messages with zero lost or duplicated messages, p95 send→``ack`` < 50 ms and send→first
``delta`` < 100 ms, and the platform's time per message at most 3× that of a bare Channels echo
consumer (``bench/echo_asgi.py``) measured in the same run.

Runs against its own database, never a developer's (as bench/tenants.py):

* with ``DATABASE_URL`` set, a database named ``agentfactory_bench_chat`` on the same server is
  dropped and recreated (through the server's ``postgres`` database) and, unless ``--keep-db``,
  dropped again at the end;
* without it, the embedded PostgreSQL starts under a temporary ``DATA_DIR``.

With ``REDIS_URL`` set the servers use channels-redis and the Redis cache, under a key prefix of
this run (``CACHE_KEY_PREFIX``).

What it does:

1. bootstraps, provisions the tenant ``bench-chat`` on the ``enterprise`` plan (no member or
   deployment limits), deploys the shipped ``it-helpdesk`` blueprint (offline ``local``
   provider: knowledge search in PostgreSQL), creates ``--users`` members with an API key each
   (scopes ``chat:use``, ``deployments:read``);
2. starts ``manage.py serve --no-worker --processes N`` (``--processes``, default one per core
   with ``REDIS_URL``, as a deployment on the machine would run) with the per-deployment message
   limit raised (and the per-user limit only if one user must send more than it allows), warms
   it up, measures the platform's frame sizes, and starts ``bench/echo_asgi.py`` the same way
   with those sizes;
   and, with ``REDIS_URL`` (unless ``--no-stored-echo``), the *stored echo*: the same echo
   plus the least the chat's rules ask of any design (a Redis count and a committed insert
   before the ``ack``, a committed update before ``done``; ``ECHO_STORE`` in the echo), which
   shows what those round trips alone cost on the machine;
3. sends ``--baseline`` messages in a row on one connection to each server (``x1`` rows:
   latencies without load); then, for each server (echo first): opens ``--connections``
   websockets in batches of ``--batch`` (each batch waits for its ``hello``), then every
   connection, after a random delay of up to ``--spread`` s (default: ``--think``), sends
   ``--messages`` messages one after another, each once the previous one ended plus a person's
   think time (``--think``, default 10 s, ±50 %; 0 measures capacity, not people), with unique
   ``client_msg_id``s, continuing its conversation. All connections stay open until the last
   conversation ends;
4. checks every message: *lost* when it got no ``ack``, or no end (``done``, or an ``error``
   of its reply) before ``--timeout`` or its socket closed; *duplicated* when it got a second
   ``ack`` or ``done``, ``duplicate: true``, or ids another message got; no gaps in delta
   ``seq`` and the streamed text equal to ``done.content``; and counts the stored user messages
   (and complete replies) in the tenant's schema. Replies that ended with an ``error`` and
   sockets the server dropped are counted and judged separately (the "(added)" line);
5. prints latency percentiles, throughput, CPU per message (server process, PostgreSQL active
   time of the bench database, client), the load average, the share of the cores' time the host
   gave to other machines (steal: figures measured under it are slower, the echo's too), the
   server's knobs and PASS/FAIL per target (exit status 1 on any FAIL).

"The platform's own time per message" (the verdict's ratio) is send→``done`` less the agent's turn
(``done.latency_ms``: the provider, its tool calls and guardrails), at the median, against the
echo's send→``done``: what the platform adds to a message (admission, storage, fan-out, frames),
the part an echo also does. The server's CPU per message (all its processes, plus PostgreSQL's
active time) is printed next to it for both.

``--profile FILE`` records the platform server with py-spy while messaging; ``--settings
MODULE`` runs this process and the platform with another settings module (one that star-imports
``config.settings.local`` and overrides a setting), to try a change without editing the project.

Usage (from the repository root)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/chat.py
    .venv/bin/python bench/chat.py --connections 100 --messages 2 --think 2 --keep-db
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import websockets
from benchlib import (
    BASE_DIR,
    BenchDatabase,
    ServerProcess,
    Summary,
    finish,
    prepare_database,
    server_process,
    setup_django,
)
from benchlib import ms as _ms

BENCH_DATABASE = "agentfactory_bench_chat"
TENANT_SLUG = "bench-chat"
BLUEPRINT = "it-helpdesk"
HELPDESK_SETTINGS = {"company_name": "Bench Corp", "helpdesk_email": "it@bench-chat.example"}
FAST_HASHER = "django.contrib.auth.hashers.MD5PasswordHasher"
SCOPES = ["chat:use", "deployments:read"]
TARGET_ACK_P95_MS = 50.0
TARGET_DELTA_P95_MS = 100.0
TARGET_RATIO = 3.0
# Before a snapshot: a backend publishes its statistics at exit, or while busy at most once a
# second, or after 10 s idle (PostgreSQL 15): pooled connections need the longer wait.
SETTLE_S = 1.5
SETTLE_POOLED_S = 11.0
PROGRESS_S = 30.0
DEFAULT_USER_LIMIT = 20  # settings.RATE_LIMIT_USER_PER_MINUTE's default
DEFAULT_DEPLOYMENT_LIMIT = 120
# Questions the helpdesk's knowledge answers (each is a knowledge_search, then quoted passages).
QUESTIONS = (
    "How do I connect to the VPN from home?",
    "I forgot my password, how can I reset it?",
    "The printer on my floor says it is offline.",
    "My Wi-Fi keeps dropping every few minutes.",
    "How do I request a new laptop?",
    "Outlook does not sync my calendar any more.",
    "I clicked a link in a suspicious email, what should I do?",
    "How do I set up multi-factor authentication on a new phone?",
)


# --------------------------------------------------------------------------------------------
# Figures


# --------------------------------------------------------------------------------------------
# Environment and database (as bench/tenants.py)


@dataclass(frozen=True)
class RateLimits:
    user: int
    deployment: int
    user_raised: bool
    deployment_raised: bool


def _rate_limits(args: argparse.Namespace) -> RateLimits:
    """Limits for the bench server: raised only as far as this run needs (unless set already)."""
    per_connection = args.messages
    per_user = max(math.ceil(args.connections / args.users) * per_connection, args.baseline)
    total = args.connections * args.messages + args.warmup + args.baseline
    user = int(os.environ.get("RATE_LIMIT_USER_PER_MINUTE", DEFAULT_USER_LIMIT))
    deployment = int(os.environ.get("RATE_LIMIT_DEPLOYMENT_PER_MINUTE", DEFAULT_DEPLOYMENT_LIMIT))
    user_raised = per_user > user
    deployment_raised = total > deployment
    return RateLimits(
        user=max(user, per_user * 2) if user_raised else user,
        deployment=max(deployment, total * 2) if deployment_raised else deployment,
        user_raised=user_raised,
        deployment_raised=deployment_raised,
    )


def prepare_environment(
    keep_db: bool, limits: RateLimits, settings_module: str = "config.settings.local"
) -> BenchDatabase:
    """Point this process (and the servers it starts) at a fresh bench database, before setup."""
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    os.environ["AGENT_FACTORY_QUIET_STARTUP"] = "1"
    os.environ["LOG_LEVEL"] = "WARNING"
    # Production-like request handling: DEBUG wraps every cursor and records every query.
    os.environ.setdefault("DJANGO_DEBUG", "false")
    # Cache, rate-limit and channel-layer keys of this run only, in a shared Redis.
    os.environ["CACHE_KEY_PREFIX"] = f"bench-chat-{uuid.uuid4().hex[:12]}:"
    os.environ["RATE_LIMIT_USER_PER_MINUTE"] = str(limits.user)
    os.environ["RATE_LIMIT_DEPLOYMENT_PER_MINUTE"] = str(limits.deployment)

    return prepare_database(
        BENCH_DATABASE, keep=keep_db, data_dir_prefix="agentfactory-bench-chat-"
    )


# --------------------------------------------------------------------------------------------
# The tenant, its deployment and its users


@dataclass(frozen=True)
class BenchTenant:
    schema_name: str
    host: str
    deployment_id: int
    keys: list[str]  # one API key per user


def provision(users: int) -> BenchTenant:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import transaction
    from django.test.utils import override_settings
    from django_tenants.utils import schema_context

    from apps.accounts.api_keys import api_key_create
    from apps.accounts.models import Role, User
    from apps.accounts.services import user_create
    from apps.deployments.models import Deployment
    from apps.deployments.services import deployment_create
    from apps.tenants.services import tenant_provision

    # Passwords are not what this benchmark is about (as in bench/tenants.py).
    override_settings(PASSWORD_HASHERS=[FAST_HASHER]).enable()
    print("bootstrap: migrating, publishing the shipped catalog...", flush=True)
    start = time.perf_counter_ns()
    call_command("bootstrap", verbosity=0, stdout=io.StringIO())
    print(f"bootstrap: done in {_ms(start) / 1000:.1f} s", flush=True)

    admin_email = f"admin@{TENANT_SLUG}.example"
    tenant = tenant_provision(
        slug=TENANT_SLUG,
        name="Bench Chat",
        admin_email=admin_email,
        admin_password=None,
        plan_code="enterprise",
    ).tenant
    start = time.perf_counter_ns()
    with schema_context(tenant.schema_name):
        deployment = deployment_create(
            tenant=tenant,
            actor=User.objects.get(email=admin_email),
            blueprint_slug=BLUEPRINT,
            name="Bench helpdesk",
            settings=HELPDESK_SETTINGS,
        )
        deployment.refresh_from_db()
        if deployment.status != Deployment.Status.ACTIVE:
            raise RuntimeError(
                f"the deployment is {deployment.status}, not active: {deployment.status_reason}"
            )
        keys: list[str] = []
        with transaction.atomic():
            for index in range(users):
                user = user_create(
                    email=f"user{index:04d}@{TENANT_SLUG}.example",
                    password=None,
                    role=Role.MEMBER,
                    email_verified=True,
                )
                keys.append(api_key_create(user=user, name="chat bench", scopes=SCOPES).secret)
    print(
        f"tenant {TENANT_SLUG} (enterprise plan): deployment {deployment.pk} of {BLUEPRINT}, "
        f"{users} members with API keys, in {_ms(start) / 1000:.1f} s",
        flush=True,
    )
    return BenchTenant(
        schema_name=tenant.schema_name,
        host=f"{TENANT_SLUG}.{settings.BASE_DOMAIN}",
        deployment_id=deployment.pk,
        keys=keys,
    )


def stored_counts(tenant: BenchTenant, prefix: str) -> tuple[int, int, int]:
    """User messages with ids of ``prefix``, distinct ids among them, and their complete replies."""
    from django.db.models import Count
    from django_tenants.utils import schema_context

    from apps.conversations.models import Message

    with schema_context(tenant.schema_name):
        mine = Message.objects.filter(
            role=Message.Role.USER, client_msg_id__startswith=prefix
        ).aggregate(rows=Count("id"), ids=Count("client_msg_id", distinct=True))
        replies = Message.objects.filter(
            role=Message.Role.ASSISTANT,
            status=Message.Status.COMPLETE,
            reply_to__client_msg_id__startswith=prefix,
        ).count()
    return int(mine["rows"]), int(mine["ids"]), replies


# --------------------------------------------------------------------------------------------
# Servers


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    pid: int
    log_path: Path

    def log_problems(self) -> Counter[str]:
        """The errors the server logged so far: the last line of each traceback, counted."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return Counter()
        problems: Counter[str] = Counter()
        for line in text.splitlines():
            if not ('"level": "ERROR"' in line or line.startswith(("ERROR", "Traceback"))):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                problems[line[:160]] += 1
                continue
            trace = str(record.get("exc_info") or record.get("message") or "").strip()
            problems[trace.splitlines()[-1][:160] if trace else "?"] += 1
        return problems


@contextmanager
def running_server(name: str, argv: list[str], env: dict[str, str]) -> Iterator[Server]:
    """Start a server on a free port (``argv`` gets ``--host``/``--port``); yield it. The errors
    it logged, shutdown included, are printed once it stopped."""

    def report_problems(stopped: ServerProcess) -> None:
        problems = Server(name, stopped.port, stopped.process.pid, stopped.log_path).log_problems()
        if problems:
            print(f"{name} server logged errors: {dict(problems)}")

    with server_process(
        argv,
        env,
        health_path="/healthz",
        log_prefix=f"agentfactory-bench-chat-{name}-",
        after_stop=report_problems,
    ) as started:
        yield Server(name, started.port, started.process.pid, started.log_path)


def platform_command(processes: int) -> list[str]:
    return [sys.executable, "manage.py", "serve", "--no-worker", "--processes", str(processes)]


def echo_command(processes: int) -> list[str]:
    return [sys.executable, str(BASE_DIR / "bench" / "echo_asgi.py"), "--processes", str(processes)]


# --------------------------------------------------------------------------------------------
# The client


@dataclass
class Sample:
    """One message of one connection, as the client saw it (times: perf_counter seconds)."""

    client_msg_id: str
    sent: float = 0.0
    ack: float | None = None
    first_delta: float | None = None
    done: float | None = None
    acks: int = 0
    dones: int = 0
    duplicate_flag: bool = False
    message_id: int | None = None
    reply_id: int | None = None
    conversation_id: int | None = None
    seqs: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    content: str | None = None
    turn_ms: float | None = None  # the agent's turn, as ``done.latency_ms`` reports it
    revised: bool = False
    status: str = ""
    error: str = ""
    # "request": refused before it was stored (error with its client_msg_id); "reply": stored,
    # its reply failed (error with its reply_id); "client": no answer in time, or socket closed.
    error_kind: str = ""
    tools: int = 0
    frames: int = 0
    bytes: int = 0
    ack_bytes: int = 0
    first_delta_bytes: int = 0
    done_bytes: int = 0

    @property
    def finished(self) -> bool:
        return self.done is not None or bool(self.error)


@dataclass
class Connection:
    index: int
    connect_ms: float | None = None
    error: str = ""
    samples: list[Sample] = field(default_factory=list)
    other_tabs: int = 0  # `message` events of the user's other sockets
    foreign: int = 0  # reply events of the user's other sockets
    unexpected: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    host: str  # the Host header (the tenant's host)
    path: str


@dataclass(frozen=True)
class LoadPlan:
    connections: int
    messages: int
    batch: int
    batch_pause: float
    spread: float
    think: float
    timeout: float
    compression: bool
    prefix: str
    keys: list[str]  # connection i uses keys[i % len(keys)]


class _Reader:
    """Routes the frames of one connection to its samples."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.by_client_id: dict[str, Sample] = {}
        self.by_reply: dict[int, Sample] = {}
        self.unmatched: dict[int, list[tuple[float, dict[str, Any], int]]] = {}

    def frame(self, raw: str | bytes, now: float) -> None:
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
        event = json.loads(raw)
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "ack":
            sample = self.by_client_id.get(event.get("client_msg_id"))
            if sample is None:
                self.conn.unexpected["ack for an unknown client_msg_id"] += 1
                return
            sample.acks += 1
            sample.frames += 1
            sample.bytes += size
            if sample.ack is None:
                sample.ack, sample.ack_bytes = now, size
                sample.message_id = event.get("message_id")
                sample.reply_id = event.get("reply_id")
                sample.conversation_id = event.get("conversation_id")
                sample.duplicate_flag = bool(event.get("duplicate"))
                if sample.reply_id is not None:
                    self.by_reply[sample.reply_id] = sample
                    for early in self.unmatched.pop(sample.reply_id, []):
                        self._reply_event(sample, *early)
            return
        if kind == "error" and "client_msg_id" in event:
            sample = self.by_client_id.get(event["client_msg_id"])
            if sample is not None:
                sample.error = f"{event.get('code')}: {event.get('message')}"
                sample.error_kind = "request"
                return
        if kind in {"delta", "tool", "done", "revised", "error"} and "reply_id" in event:
            reply_id = event["reply_id"]
            sample = self.by_reply.get(reply_id)
            if sample is None:
                self.unmatched.setdefault(reply_id, []).append((now, event, size))
            else:
                self._reply_event(sample, now, event, size)
            return
        if kind == "message":
            self.conn.other_tabs += 1
            return
        self.conn.unexpected[str(kind)] += 1

    def _reply_event(self, sample: Sample, now: float, event: dict[str, Any], size: int) -> None:
        sample.frames += 1
        sample.bytes += size
        kind = event["type"]
        if kind == "delta":
            if sample.first_delta is None:
                sample.first_delta, sample.first_delta_bytes = now, size
            sample.seqs.append(int(event.get("seq", 0)))
            sample.text.append(str(event.get("text", "")))
        elif kind == "tool":
            sample.tools += 1
        elif kind == "revised":
            sample.revised = True
        elif kind == "done":
            sample.dones += 1
            if sample.done is None:
                sample.done, sample.done_bytes = now, size
                sample.content = event.get("content")
                sample.status = str(event.get("status"))
                latency = event.get("latency_ms")
                sample.turn_ms = float(latency) if isinstance(latency, int | float) else None
        elif kind == "error":
            sample.error = f"{event.get('code')}: {event.get('message')}"
            sample.error_kind = "reply"

    def finish(self) -> None:
        self.conn.foreign += sum(len(events) for events in self.unmatched.values())
        self.unmatched.clear()


def _closed(closed: websockets.ConnectionClosed, stage: str) -> str:
    code = f"code {closed.rcvd.code}" if closed.rcvd else "no close frame"
    return f"closed by the server ({code}) while {stage}"


async def _conversation(
    target: Target,
    plan: LoadPlan,
    conn: Connection,
    connected: asyncio.Future[None],
    start: asyncio.Event,
    finished: asyncio.Event,
) -> None:
    key = plan.keys[conn.index % len(plan.keys)]
    reader = _Reader(conn)
    t0 = time.perf_counter()
    try:
        socket_ = await websockets.connect(
            f"ws://{target.host}:{target.port}{target.path}",
            host="127.0.0.1",  # *.localhost is not resolved here; the Host header is the tenant's
            port=target.port,
            additional_headers={"Authorization": f"Bearer {key}"},
            compression="deflate" if plan.compression else None,
            open_timeout=plan.timeout,
            max_size=None,
        )
    except Exception as error:
        conn.error = f"connect: {type(error).__name__}: {error}"
        connected.set_result(None)
        return
    try:
        async with asyncio.timeout(plan.timeout):
            hello = json.loads(await socket_.recv())
        if hello.get("type") != "hello":
            raise RuntimeError(f"first frame is not hello: {hello}")
        conn.connect_ms = (time.perf_counter() - t0) * 1000
    except Exception as error:
        conn.error = f"hello: {type(error).__name__}: {error}"
        connected.set_result(None)
        await socket_.close()
        return
    connected.set_result(None)
    stage = "waiting for the start"
    try:
        await start.wait()
        if plan.spread:
            await asyncio.sleep(random.uniform(0, plan.spread))
        conversation_id: int | None = None
        for index in range(plan.messages):
            sample = Sample(client_msg_id=f"{plan.prefix}-c{conn.index}-m{index}")
            conn.samples.append(sample)
            reader.by_client_id[sample.client_msg_id] = sample
            payload: dict[str, Any] = {
                "type": "message",
                "content": QUESTIONS[(conn.index + index) % len(QUESTIONS)],
                "client_msg_id": sample.client_msg_id,
            }
            if conversation_id is not None:
                payload["conversation_id"] = conversation_id
            frame = json.dumps(payload)
            stage = "a message in flight"
            try:
                async with asyncio.timeout(plan.timeout):
                    sample.sent = time.perf_counter()
                    await socket_.send(frame)
                    while not sample.finished:
                        raw = await socket_.recv()
                        reader.frame(raw, time.perf_counter())
            except TimeoutError:
                if not sample.error:
                    sample.error = f"no answer within {plan.timeout:.0f} s"
                    sample.error_kind = "client"
            conversation_id = sample.conversation_id or conversation_id
            stage = "between messages"
            if plan.think and index + 1 < plan.messages:
                # A person reads the reply and types the next message: think time ±50 %.
                await asyncio.sleep(random.uniform(0.5, 1.5) * plan.think)

        # Stay connected (and keep reading: a late duplicate still counts) until all are done.
        stage = "idle after its messages"

        async def drain() -> None:
            try:
                async for raw in socket_:
                    reader.frame(raw, time.perf_counter())
            except websockets.ConnectionClosed as closed:
                conn.error = _closed(closed, stage)

        drainer = asyncio.create_task(drain())
        await finished.wait()
        await asyncio.sleep(0.2)
        drainer.cancel()
        with suppress(asyncio.CancelledError):
            await drainer
    except websockets.ConnectionClosed as closed:
        conn.error = _closed(closed, stage)
        if conn.samples and not conn.samples[-1].finished:
            conn.samples[-1].error, conn.samples[-1].error_kind = "socket closed", "client"
    except Exception as error:
        conn.error = f"{type(error).__name__}: {error}"
    finally:
        reader.finish()
        await socket_.close()


async def _progress(
    name: str, conns: list[Connection], plan: LoadPlan, stop: asyncio.Event
) -> None:
    """A line every PROGRESS_S seconds during a long phase."""
    started = time.perf_counter()
    while not stop.is_set():
        with suppress(TimeoutError):
            async with asyncio.timeout(PROGRESS_S):
                await stop.wait()
        if stop.is_set():
            return
        samples = [sample for conn in conns for sample in conn.samples]
        print(
            f"  {name}: {time.perf_counter() - started:.0f} s, connected "
            f"{sum(1 for c in conns if c.connect_ms is not None)}/{len(conns)}, messages ended "
            f"{sum(1 for x in samples if x.finished)}/{len(conns) * plan.messages} "
            f"({sum(1 for x in samples if x.error)} with an error), dropped sockets "
            f"{sum(1 for c in conns if c.error.startswith('closed'))}",
            flush=True,
        )


async def _loop_lag(sink: list[float], stop: asyncio.Event) -> None:
    """How late this client's event loop wakes up: large values would make latencies suspect."""
    interval = 0.01
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(interval)
        sink.append((time.perf_counter() - before - interval) * 1000)


@dataclass
class LoadResult:
    target: str
    connections: list[Connection]
    ramp_s: float
    messaging_s: float
    loop_lag_ms: list[float]
    open_peak: int
    # Before the ramp, after it (connections open, before any message), after the last done.
    snapshots: tuple[Snapshot, Snapshot, Snapshot]

    @property
    def samples(self) -> list[Sample]:
        return [sample for conn in self.connections for sample in conn.samples]


async def _load(target: Target, plan: LoadPlan, probe: Callable[[], Snapshot]) -> LoadResult:
    conns = [Connection(index) for index in range(plan.connections)]
    before = probe()
    start, finished, stop_lag = asyncio.Event(), asyncio.Event(), asyncio.Event()
    lag: list[float] = []
    lag_task = asyncio.create_task(_loop_lag(lag, stop_lag))
    progress_task = asyncio.create_task(_progress(target.name, conns, plan, stop_lag))
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    ramp_start = time.perf_counter()
    for first in range(0, plan.connections, plan.batch):
        batch = conns[first : first + plan.batch]
        ready: list[asyncio.Future[None]] = []
        for conn in batch:
            connected: asyncio.Future[None] = loop.create_future()
            ready.append(connected)
            tasks.append(
                asyncio.create_task(_conversation(target, plan, conn, connected, start, finished))
            )
        await asyncio.gather(*ready)
        if plan.batch_pause and first + plan.batch < plan.connections:
            await asyncio.sleep(plan.batch_pause)
    ramp_s = time.perf_counter() - ramp_start
    open_peak = sum(1 for conn in conns if conn.connect_ms is not None and not conn.error)
    await asyncio.sleep(_settle_s())
    ramped = probe()
    lag.clear()  # the messaging phase only
    messaging_start = time.perf_counter()
    start.set()

    async def all_sent() -> None:
        while any(
            len(conn.samples) < plan.messages or not conn.samples[-1].finished
            for conn in conns
            if conn.connect_ms is not None and not conn.error
        ):
            await asyncio.sleep(0.05)

    await all_sent()
    messaging_s = time.perf_counter() - messaging_start
    stop_lag.set()
    await lag_task
    progress_task.cancel()
    await asyncio.sleep(_settle_s())  # sockets still open: PostgreSQL publishes its statistics
    done = probe()
    finished.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return LoadResult(
        target.name, conns, ramp_s, messaging_s, lag, open_peak, (before, ramped, done)
    )


def _settle_s() -> float:
    pooled = int(os.environ.get("DATABASE_POOL_MAX_SIZE", "0") or 0) > 0
    return SETTLE_POOLED_S if pooled else SETTLE_S


def run_load(target: Target, plan: LoadPlan, probe: Callable[[], Snapshot]) -> LoadResult:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_load(target, plan, probe))
    result: LoadResult = uvloop.run(_load(target, plan, probe))
    return result


# --------------------------------------------------------------------------------------------
# Resources


@dataclass(frozen=True)
class Snapshot:
    wall: float
    loadavg: tuple[float, float, float]
    server_cpu_s: float
    client_cpu_s: float
    machine_busy: int
    machine_total: int
    machine_steal: int  # time the hypervisor gave this machine's cores to others (in busy)
    pg: tuple[float, int, int] | None  # active_time ms, sessions, xact_commit of the bench db


def _process_cpu_s(pid: int) -> float:
    """CPU time of ``pid`` and every process below it (uvicorn's worker processes)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime, stime
    tree, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current in tree:
            continue
        tree.add(current)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return sum(ticks.get(member, 0) for member in tree) / os.sysconf("SC_CLK_TCK")


def _machine_jiffies() -> tuple[int, int, int]:
    """Busy, total and stolen time of all cores so far (``/proc/stat``; steal is the 8th
    field: a virtual machine's cores that ran someone else's work, which slows every figure)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0, 0, 0
    values = [int(value) for value in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    steal = values[7] if len(values) > 7 else 0
    return sum(values) - idle, sum(values), steal


def _loadavg() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return one, five, fifteen


def pg_params() -> dict[str, Any]:
    """Connection parameters of the bench database, for psycopg (usable inside the event loop,
    where Django's ORM is not)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    params = {
        "dbname": db["NAME"],
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
    }
    return {key: value for key, value in params.items() if value is not None}


def stored_echo_table() -> str:
    """Create the stored echo's table in the bench database; its connection string."""
    params = pg_params()
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_echo_message "
            "(id bigserial PRIMARY KEY, content text NOT NULL, reply text NOT NULL)"
        )
    return psycopg.conninfo.make_conninfo(**params)


def _pg_stats(params: dict[str, Any]) -> tuple[float, int, int] | None:
    """The bench database's active time (ms), sessions and commits so far."""
    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            row = conn.execute(
                "SELECT active_time, sessions, xact_commit FROM pg_stat_database "
                "WHERE datname = current_database()"
            ).fetchone()
    except psycopg.Error:
        return None
    return (float(row[0]), int(row[1]), int(row[2])) if row else None


def snapshot(server_pid: int, pg: dict[str, Any] | None) -> Snapshot:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    busy, total, steal = _machine_jiffies()
    return Snapshot(
        wall=time.perf_counter(),
        loadavg=_loadavg(),
        server_cpu_s=_process_cpu_s(server_pid),
        client_cpu_s=usage.ru_utime + usage.ru_stime,
        machine_busy=busy,
        machine_total=total,
        machine_steal=steal,
        pg=_pg_stats(pg) if pg is not None else None,
    )


# --------------------------------------------------------------------------------------------
# A measured phase


@dataclass
class Check:
    """``lost``: no ``ack``, or no end (``done`` or a reply ``error``), and no refusal either.
    ``failed``: stored, but the reply ended with an ``error``. ``rejected``: refused with an
    ``error`` before it was stored (rate limit, validation)."""

    sent: int = 0
    acked: int = 0
    done_complete: int = 0
    failed: int = 0
    rejected: int = 0
    lost: int = 0
    duplicated: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    seq_gaps: int = 0
    text_mismatch: int = 0
    stored: tuple[int, int, int] | None = None  # rows, distinct ids, complete replies


@dataclass
class Phase:
    load: LoadResult
    check: Check
    log_problems: Counter[str]


def check_samples(samples: list[Sample], *, streamed_text: bool) -> Check:
    """``streamed_text``: the deltas must add up to ``done.content`` (not the echo's filler)."""
    check = Check(sent=len(samples))
    message_ids: Counter[int] = Counter()
    reply_ids: Counter[int] = Counter()
    for sample in samples:
        if sample.ack is not None:
            check.acked += 1
        if sample.message_id is not None:
            message_ids[sample.message_id] += 1
        if sample.reply_id is not None:
            reply_ids[sample.reply_id] += 1
        complete = sample.done is not None and sample.status == "complete"
        if complete:
            check.done_complete += 1
        if sample.error_kind == "request":
            check.rejected += 1
        elif sample.ack is None or (sample.done is None and sample.error_kind != "reply"):
            check.lost += 1
        elif sample.error_kind == "reply":
            check.failed += 1
        if sample.acks > 1 or sample.dones > 1 or sample.duplicate_flag:
            check.duplicated += 1
        if sample.error:
            check.errors[f"{sample.error_kind} {sample.error.split(':', 1)[0]}"] += 1
        if sample.seqs != list(range(1, len(sample.seqs) + 1)):
            check.seq_gaps += 1
        if (
            streamed_text
            and complete
            and not sample.revised
            and "".join(sample.text) != (sample.content or "")
        ):
            check.text_mismatch += 1
    check.duplicated += sum(n - 1 for n in message_ids.values() if n > 1)
    check.duplicated += sum(n - 1 for n in reply_ids.values() if n > 1)
    return check


class _Probe:
    """Snapshots for ``_load``; with ``profile``, py-spy samples the server while messaging."""

    def __init__(self, server: Server, pg: dict[str, Any] | None, profile: Path | None) -> None:
        self.server, self.pg, self.profile = server, pg, profile
        self.calls = 0
        self.spy: subprocess.Popen[bytes] | None = None

    def __call__(self) -> Snapshot:
        self.calls += 1
        if self.calls == 3:
            self.stop()
        taken = snapshot(self.server.pid, self.pg)
        if self.calls == 2 and self.profile is not None:
            spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            self.spy = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(self.server.pid),
                    "--subprocesses",  # the uvicorn workers of ``serve --processes``
                    "--threads",
                    "--gil",
                    "--rate",
                    "200",
                ]
                + ["--format", "raw", "--output", str(self.profile)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return taken

    def stop(self) -> None:
        if self.spy is not None and self.spy.poll() is None:
            self.spy.send_signal(signal.SIGINT)
            try:
                self.spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.spy.kill()
        self.spy = None


def measure(
    server: Server,
    target: Target,
    plan: LoadPlan,
    tenant: BenchTenant | None,
    profile: Path | None = None,
    database: bool = False,
) -> Phase:
    """One load on one server; ``tenant`` for the platform (database statistics and counts),
    ``database`` for another server that uses the bench database (its statistics)."""
    uses_database = tenant is not None or database
    probe = _Probe(server, pg_params() if uses_database else None, profile)
    try:
        load = run_load(target, plan, probe)
    finally:
        probe.stop()
    if profile is not None:
        print(f"{server.name}: py-spy profile of the messaging phase in {profile}", flush=True)
    check = check_samples(load.samples, streamed_text=tenant is not None)
    if tenant is not None:
        check.stored = stored_counts(tenant, plan.prefix + "-")
    return Phase(load, check, server.log_problems())


@dataclass(frozen=True)
class FrameSizes:
    ack: int
    first_delta: int
    done: int
    frames_per_message: float
    bytes_per_message: float
    tools_per_message: float
    deltas_per_message: float


def frame_sizes(samples: list[Sample]) -> FrameSizes:
    good = [s for s in samples if s.ack is not None and s.done is not None]
    if not good:
        raise RuntimeError("the warm-up got no complete reply from the platform")
    return FrameSizes(
        ack=round(statistics.median(s.ack_bytes for s in good)),
        first_delta=round(statistics.median(s.first_delta_bytes for s in good)),
        done=round(statistics.median(s.done_bytes for s in good)),
        frames_per_message=statistics.fmean(s.frames for s in good),
        bytes_per_message=statistics.fmean(s.bytes for s in good),
        tools_per_message=statistics.fmean(s.tools for s in good),
        deltas_per_message=statistics.fmean(len(s.seqs) for s in good),
    )


# --------------------------------------------------------------------------------------------
# Report


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(
        cell.ljust(width) if i < 2 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [_row(header, widths), _row(["-" * w for w in widths], widths)]
    lines.extend(_row(row, widths) for row in rows)
    return "\n".join(lines)


def _latencies(samples: list[Sample], point: str) -> list[float]:
    values = []
    for sample in samples:
        at = getattr(sample, point)
        if at is not None and sample.sent:
            values.append((at - sample.sent) * 1000)
    return values


def _latency_rows(name: str, phase: Phase) -> list[list[str]]:
    rows = []
    connects = [c.connect_ms for c in phase.load.connections if c.connect_ms is not None]
    series = [
        ("connect → hello", connects),
        ("send → ack", _latencies(phase.load.samples, "ack")),
        ("send → first delta", _latencies(phase.load.samples, "first_delta")),
        ("send → done", _latencies(phase.load.samples, "done")),
    ]
    for label, values in series:
        if not values:
            rows.append([name, label, "0", "-", "-", "-", "-", "-"])
            continue
        s = Summary.of(values)
        rows.append(
            [
                name,
                label,
                str(s.count),
                f"{s.p50:.1f}",
                f"{s.p95:.1f}",
                f"{s.p99:.1f}",
                f"{s.max:.1f}",
                f"{s.mean:.1f}",
            ]
        )
    return rows


def _own_times(samples: list[Sample]) -> list[float]:
    """Send → ``done`` less the agent's turn (``done.latency_ms``: the provider, its tool calls
    and the guardrails): what the platform itself added to the message (admission, storage,
    fan-out through the channel layer, the frames), the part an echo consumer also does."""
    return [
        (sample.done - sample.sent) * 1000 - sample.turn_ms
        for sample in samples
        if sample.done is not None and sample.sent and sample.turn_ms is not None
    ]


def _p(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass(frozen=True)
class Cost:
    """Resources used between two snapshots, per unit (connection or message)."""

    server_ms: float
    client_ms: float
    pg_active_ms: float | None
    pg_sessions: float | None
    pg_commits: float | None
    machine_busy_pct: float
    machine_steal_pct: float

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot, units: int) -> Cost:
        units = max(1, units)
        total = b.machine_total - a.machine_total
        pg = [(b.pg[i] - a.pg[i]) / units for i in range(3)] if a.pg and b.pg else [None] * 3
        return cls(
            server_ms=(b.server_cpu_s - a.server_cpu_s) * 1000 / units,
            client_ms=(b.client_cpu_s - a.client_cpu_s) * 1000 / units,
            pg_active_ms=pg[0],
            pg_sessions=pg[1],
            pg_commits=pg[2],
            machine_busy_pct=100.0 * (b.machine_busy - a.machine_busy) / max(1, total),
            machine_steal_pct=100.0 * (b.machine_steal - a.machine_steal) / max(1, total),
        )

    def describe(self, unit: str) -> str:
        parts = [f"server process CPU {self.server_ms:.2f} ms/{unit}"]
        if self.pg_active_ms is not None:
            parts.append(
                f"PostgreSQL active {self.pg_active_ms:.2f} ms/{unit} over "
                f"{self.pg_sessions:.1f} new connections and {self.pg_commits:.1f} commits/{unit}"
            )
        parts.append(f"client CPU {self.client_ms:.2f} ms/{unit}")
        return "; ".join(parts)


def _connect_cost(phase: Phase) -> Cost:
    before, ramped, _done = phase.load.snapshots
    return Cost.between(before, ramped, len(phase.load.connections))


def _message_cost(phase: Phase) -> Cost:
    _before, ramped, done = phase.load.snapshots
    return Cost.between(ramped, done, len(phase.load.samples))


def report(
    plan: LoadPlan,
    phases: dict[str, Phase],
    sizes: FrameSizes,
    knobs: list[tuple[str, str]],
    facts: list[tuple[str, str]],
) -> bool:
    platform_phase, echo_phase = phases["platform"], phases["echo"]
    print()
    print("=" * 96)
    print(
        f"Chat websocket: {plan.connections} concurrent connections x {plan.messages} messages "
        f"(batches of {plan.batch}, start spread {plan.spread:g} s, think {plan.think:g} s, "
        f"permessage-deflate {'on' if plan.compression else 'off'})"
    )
    print()
    rows = []
    for name in ("echo x1", "stored echo x1", "platform x1"):
        if name in phases:
            rows += [row for row in _latency_rows(name, phases[name]) if "connect" not in row[1]]
    for name in ("echo", "stored echo", "platform"):
        if name in phases:
            rows += _latency_rows(name, phases[name])
    print(_table(["server", "ms", "n", "p50", "p95", "p99", "max", "mean"], rows))
    if "platform x1" in phases and "echo x1" in phases:
        alone, echo_alone = phases["platform x1"], phases["echo x1"]
        done_alone = _p(_latencies(alone.load.samples, "done"), 50)
        echo_done_alone = _p(_latencies(echo_alone.load.samples, "done"), 50)
        ratio_alone = (
            f" = {done_alone / echo_done_alone:.1f}x"
            if done_alone is not None and echo_done_alone
            else ""
        )
        print(
            f"x1: one connection, {len(alone.load.samples)} messages in a row, before the load "
            f"(unloaded; lost {alone.check.lost}, duplicated {alone.check.duplicated}); "
            f"p50 send → done {done_alone or 0:.1f} ms vs echo {echo_done_alone or 0:.1f} ms"
            + ratio_alone
        )
    print()

    def phase_lines(name: str, phase: Phase) -> None:
        load, check = phase.load, phase.check
        established = sum(1 for c in load.connections if c.connect_ms is not None)
        conn_errors = Counter(c.error.split(":", 1)[0] for c in load.connections if c.error)
        connect_cost, message_cost = _connect_cost(phase), _message_cost(phase)
        before, _ramped, after = load.snapshots
        rate = len(load.samples) / load.messaging_s if load.messaging_s else 0.0
        lag95 = _p(load.loop_lag_ms, 95)
        print(f"{name}:")
        print(
            f"  connections established {established}/{len(load.connections)} "
            f"(ramp {load.ramp_s:.1f} s), connection errors {sum(conn_errors.values())}"
            + (f" {dict(conn_errors)}" if conn_errors else "")
        )
        print(
            f"  messages sent {check.sent}, acked {check.acked}, done complete "
            f"{check.done_complete}, reply failed {check.failed}, refused {check.rejected}, "
            f"lost {check.lost}, duplicated {check.duplicated}; seq gaps {check.seq_gaps}, "
            f"streamed != done {check.text_mismatch}"
        )
        if check.errors:
            print(f"  errors (kind, code): {dict(check.errors.most_common())}")
        if check.stored is not None:
            rows_, ids, replies = check.stored
            print(
                f"  stored in {TENANT_SLUG}'s schema: {rows_} user messages ({ids} distinct "
                f"client_msg_id) and {replies} complete replies, for {check.sent} sent"
            )
        print(f"  connecting: {connect_cost.describe('connection')}")
        print(
            f"  messaging: {len(load.samples)} messages in {load.messaging_s:.1f} s = "
            f"{rate:.1f} msg/s; {message_cost.describe('message')}"
        )
        lag = f"; client event-loop lag p95 {lag95:.1f} ms" if lag95 is not None else ""
        print(
            f"  load average (1 min) {before.loadavg[0]:.2f} -> {after.loadavg[0]:.2f}; "
            f"machine busy while messaging {message_cost.machine_busy_pct:.0f}% of all "
            f"cores, of which stolen by the host {message_cost.machine_steal_pct:.0f}%{lag}"
        )
        if phase.log_problems:
            print(f"  server logged errors (so far): {dict(phase.log_problems)}")
        if any(c.unexpected for c in load.connections):
            unexpected: Counter[str] = Counter()
            for c in load.connections:
                unexpected.update(c.unexpected)
            print(f"  unexpected frames: {dict(unexpected)}")

    phase_lines("echo", echo_phase)
    if "stored echo" in phases:
        phase_lines("stored echo", phases["stored echo"])
    phase_lines("platform", platform_phase)
    print(
        f"  frames per message {sizes.frames_per_message:.1f} ({sizes.tools_per_message:.1f} "
        f"tool, {sizes.deltas_per_message:.1f} delta), {sizes.bytes_per_message:.0f} bytes; the "
        f"echo sends 3: ack {sizes.ack} B, delta {sizes.first_delta} B, done {sizes.done} B "
        "(the platform's medians)"
    )

    samples = platform_phase.load.samples
    echo_samples = echo_phase.load.samples
    check = platform_phase.check
    expected = check.sent - check.rejected
    stored_ok = check.stored is None or (
        check.stored[0] == expected and check.stored[1] == expected
    )
    drops = sum(1 for c in platform_phase.load.connections if c.error.startswith("closed"))
    all_connected = all(c.connect_ms is not None for c in platform_phase.load.connections)
    integrity = (
        all_connected
        and check.lost == 0
        and check.duplicated == 0
        and check.seq_gaps == 0
        and check.text_mismatch == 0
        and stored_ok
    )
    ack95 = _p(_latencies(samples, "ack"), 95)
    delta95 = _p(_latencies(samples, "first_delta"), 95)
    done50 = _p(_latencies(samples, "done"), 50)
    echo_done50 = _p(_latencies(echo_samples, "done"), 50)
    own50 = _p(_own_times(samples), 50)
    ratio = (own50 / echo_done50) if own50 is not None and echo_done50 else None
    p_cost, e_cost = _message_cost(platform_phase), _message_cost(echo_phase)
    p_server = p_cost.server_ms + (p_cost.pg_active_ms or 0.0)
    cpu_ratio = p_server / e_cost.server_ms if e_cost.server_ms else None

    verdicts = [
        (
            f"{plan.connections} connections, zero lost or duplicated messages",
            integrity,
            f"lost {check.lost}, duplicated {check.duplicated}, connected "
            f"{sum(1 for c in platform_phase.load.connections if c.connect_ms is not None)}, "
            f"stored {check.stored[0] if check.stored else '?'}/{expected}",
        ),
        (
            f"p95 send → ack < {TARGET_ACK_P95_MS:.0f} ms",
            ack95 is not None and ack95 < TARGET_ACK_P95_MS,
            f"{ack95:.1f} ms" if ack95 is not None else "no ack",
        ),
        (
            f"p95 send → first delta < {TARGET_DELTA_P95_MS:.0f} ms",
            delta95 is not None and delta95 < TARGET_DELTA_P95_MS,
            f"{delta95:.1f} ms" if delta95 is not None else "no delta",
        ),
        (
            f"platform's own time per message (p50) <= {TARGET_RATIO:g}x echo",
            ratio is not None and ratio <= TARGET_RATIO,
            f"platform {own50:.1f} ms / echo send → done {echo_done50:.1f} ms = {ratio:.1f}x"
            if ratio is not None and own50 is not None and echo_done50 is not None
            else "n/a",
        ),
        (
            "(added) every reply complete, no socket dropped",
            check.done_complete == check.sent and drops == 0,
            f"{check.done_complete}/{check.sent} complete, {check.failed} failed, "
            f"{check.rejected} refused, {drops} sockets dropped",
        ),
    ]
    print()
    print(
        "server time per message (process CPU + PostgreSQL active time): platform "
        f"{p_server:.2f} ms vs echo {e_cost.server_ms:.2f} ms"
        + (f" = {cpu_ratio:.1f}x" if cpu_ratio is not None else "")
    )
    own = _own_times(samples)
    if own:
        summary = Summary.of(own)
        print(
            f"platform's own time per message (send → done less the agent's turn): p50 "
            f"{summary.p50:.1f} ms, p95 {summary.p95:.1f} ms; send → done p50 "
            f"{done50 or 0:.1f} ms (echo {echo_done50 or 0:.1f} ms)"
        )
    if "stored echo" in phases:
        stored50 = _p(_latencies(phases["stored echo"].load.samples, "done"), 50)
        if stored50 is not None and echo_done50:
            print(
                "the least that committing the message before the ack and the reply before done "
                f"adds to the echo (the stored echo): send → done p50 {stored50:.1f} ms = "
                f"{stored50 / echo_done50:.1f}x the echo's"
                + (f"; the platform's own time is {own50 / stored50:.1f}x it" if own50 else "")
            )
    print()
    print("Targets")
    width = max(len(label) for label, _ok, _detail in verdicts)
    for label, ok, detail in verdicts:
        print(f"  {label.ljust(width)}  {_verdict(ok)}  ({detail})")
    print()
    print("Server knobs")
    knob_width = max(len(name) for name, _ in knobs)
    for name, value in knobs:
        print(f"  {name.ljust(knob_width)}  {value}")
    print()
    print("Machine")
    fact_width = max(len(name) for name, _ in facts)
    for name, value in facts:
        print(f"  {name.ljust(fact_width)}  {value}")
    print("=" * 96)
    return all(ok for _label, ok, _detail in verdicts)


def server_knobs(limits: RateLimits, echo_layer: str, processes: int) -> list[tuple[str, str]]:
    from django.conf import settings

    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    if "pubsub" in layer["BACKEND"].lower():
        layer = {**layer, "CONFIG": {**layer.get("CONFIG", {}), "capacity": "none (pub/sub)"}}
    cache: dict[str, Any] = settings.CACHES["default"]
    capacity = layer.get("CONFIG", {}).get("capacity", "100 (channels' default)")
    try:
        import uvloop  # noqa: F401

        loop = "uvloop (uvicorn's auto)"
    except ImportError:
        loop = "asyncio"
    pool = os.environ.get("DATABASE_POOL_MAX_SIZE", "0")
    return [
        (
            "processes",
            f"{processes} per server (`manage.py serve --processes {processes}`, uvicorn workers "
            "sharing the port); the echo likewise",
        ),
        (
            "uvicorn",
            f"ws=websockets-sansio, ws_max_size {settings.WEBSOCKET_MAX_BYTES} B, "
            f"permessage-deflate {'on' if settings.WEBSOCKET_COMPRESSION else 'off'}, "
            f"lifespan off, {loop}",
        ),
        (
            "DATABASE_POOL_MAX_SIZE",
            f"{pool}"
            + (
                " (no pool: HTTP requests open a connection each; the chat's database threads "
                "keep theirs)"
                if pool in {"", "0"}
                else ""
            ),
        ),
        (
            "database threads",
            f"{settings.DATABASE_THREADS} per process (DATABASE_THREADS), each keeping its "
            "connection: consumer database work and knowledge search",
        ),
        (
            "channel layer",
            f"{layer['BACKEND'].rsplit('.', 1)[-1]}, capacity {capacity}; the echo's: "
            + ("none" if echo_layer == "none" else f"{echo_layer}, a group per socket"),
        ),
        ("cache", str(cache["BACKEND"]).rsplit(".", 1)[-1]),
        (
            "RATE_LIMIT_USER_PER_MINUTE",
            f"{limits.user}"
            + (
                f" (raised for the bench from {DEFAULT_USER_LIMIT})"
                if limits.user_raised
                else " (unchanged)"
            ),
        ),
        (
            "RATE_LIMIT_DEPLOYMENT_PER_MINUTE",
            f"{limits.deployment}"
            + (
                f" (raised for the bench from {DEFAULT_DEPLOYMENT_LIMIT})"
                if limits.deployment_raised
                else " (unchanged)"
            ),
        ),
        ("DEBUG", str(settings.DEBUG)),
        ("settings", os.environ["DJANGO_SETTINGS_MODULE"]),
    ]


def machine_facts(database: BenchDatabase) -> list[tuple[str, str]]:
    import django
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        row = cursor.fetchone()
    connection.close()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("nproc", str(affinity)),
        ("os", platform.platform()),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("django", django.get_version()),
        ("websockets (client)", websockets.__version__),
        ("postgresql", str(row[0]).split(" on ")[0] if row else "?"),
        ("database", database.description),
        ("redis", os.environ.get("REDIS_URL") or "(none: in-memory layer and cache)"),
    ]


# --------------------------------------------------------------------------------------------
# Entry point


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=_positive, default=500)
    parser.add_argument("--messages", type=_positive, default=3, help="per connection")
    parser.add_argument(
        "--users",
        type=_positive,
        default=None,
        help="members with an API key; connections are spread over them (default: one each). "
        "A user's sockets form one group: every reply reaches all of them",
    )
    parser.add_argument("--batch", type=_positive, default=50, help="connections per ramp step")
    parser.add_argument("--batch-pause", type=_seconds, default=0.1)
    parser.add_argument(
        "--spread",
        type=_seconds,
        default=None,
        help="random delay before the first message (default: --think, or 1 s without)",
    )
    parser.add_argument(
        "--think",
        type=_seconds,
        default=10.0,
        help="a person's pause between a reply's done and their next message, ±50 %% "
        "(default 10 s; 0: send at once, which measures capacity, not people)",
    )
    parser.add_argument("--timeout", type=_seconds, default=600.0, help="per message")
    parser.add_argument("--warmup", type=_positive, default=16, help="platform warm-up messages")
    parser.add_argument(
        "--baseline",
        type=int,
        default=10,
        help="messages sent in a row on one connection to each server before the load, for "
        "unloaded latencies (0: none)",
    )
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument(
        "--processes",
        type=_positive,
        default=None,
        help="ASGI processes of each server (`manage.py serve --processes`; default: one per "
        "core, as a deployment on this machine would run; more than one needs REDIS_URL)",
    )
    parser.add_argument(
        "--echo-layer",
        choices=["none", "redis", "memory"],
        default="none",
        help="the echo's channel layer: none (default, a bare consumer), or a group per socket "
        "with delta and done through group_send, as the platform's replies",
    )
    parser.add_argument(
        "--no-stored-echo",
        dest="stored_echo",
        action="store_false",
        help="skip the stored echo (the echo plus the least the chat's rules ask of any design: "
        "a Redis count and a committed insert before the ack, a committed update before done; "
        "needs REDIS_URL)",
    )
    parser.add_argument(
        "--settings",
        default="config.settings.local",
        help="settings module of this process and the platform server (default "
        "config.settings.local); a module of one's own on PYTHONPATH that star-imports it and "
        "overrides a setting tries a change without editing the project",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record the platform server with py-spy while messaging (collapsed stacks, per "
        "thread) into this file; sampling slows the server, so figures of such a run are not "
        "the benchmark's",
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="keep the bench database (or DATA_DIR) at the end"
    )
    args = parser.parse_args(argv)
    if args.processes is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        args.processes = cores if os.environ.get("REDIS_URL") else 1
    if args.spread is None:
        args.spread = args.think or 1.0
    if args.users is None:
        args.users = args.connections
    if args.profile is not None:
        args.profile = args.profile.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A plain kill still stops the servers and drops the database (the finally clauses run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    limits = _rate_limits(args)
    database = prepare_environment(args.keep_db, limits, args.settings)
    print(f"bench database: {database.description}", flush=True)
    passed = False
    try:
        setup_django()
        # Users of the load, of the warm-up (one message each), of the one-connection baseline.
        tenant = provision(args.users + args.warmup + 1)
        keys = tenant.keys[: args.users]
        warm_keys = tenant.keys[args.users : args.users + args.warmup]
        baseline_plan = LoadPlan(
            connections=1,
            messages=args.baseline,
            batch=1,
            batch_pause=0.0,
            spread=0.0,
            think=0.0,
            timeout=args.timeout,
            compression=not args.no_compression,
            prefix="base",
            keys=tenant.keys[-1:],
        )
        path = f"/ws/deployments/{tenant.deployment_id}/chat/"
        base = {
            "batch": args.batch,
            "batch_pause": args.batch_pause,
            "think": args.think,
            "timeout": args.timeout,
            "compression": not args.no_compression,
        }
        phases: dict[str, Phase] = {}

        def warm_up(target: Target, server: Server, keys: list[str]) -> LoadResult:
            """``--warmup`` sockets, one message each, before anything is measured."""
            plan = LoadPlan(
                connections=args.warmup, messages=1, spread=0.5, prefix="warm", keys=keys, **base
            )
            return run_load(target, plan, lambda: snapshot(server.pid, None))

        with running_server(
            "platform", platform_command(args.processes), os.environ.copy()
        ) as product:
            target = Target("platform", product.port, tenant.host, path)
            print(f"platform: warming up with {args.warmup} messages...", flush=True)
            warm = warm_up(target, product, warm_keys)
            sizes = frame_sizes(warm.samples)
            if args.baseline:
                print(f"platform: one connection, {args.baseline} messages...", flush=True)
                phases["platform x1"] = measure(product, target, baseline_plan, tenant)
            echo_env = {
                key: value
                for key, value in os.environ.items()
                if key not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL"}
            }
            echo_env |= {
                "ECHO_CHANNEL_LAYER": args.echo_layer,
                "ECHO_ACK_BYTES": str(sizes.ack),
                "ECHO_DELTA_BYTES": str(sizes.first_delta),
                "ECHO_DONE_BYTES": str(sizes.done),
            }
            load_plan = LoadPlan(
                connections=args.connections,
                messages=args.messages,
                spread=args.spread,
                prefix="load",
                keys=keys,
                **base,
            )

            def run_echo(name: str, env: dict[str, str], database: bool = False) -> None:
                with running_server(name, echo_command(args.processes), env) as echo:
                    echo_target = Target(name, echo.port, tenant.host, path)
                    warm_up(echo_target, echo, keys)
                    if args.baseline:
                        print(f"{name}: one connection, {args.baseline} messages...", flush=True)
                        phases[f"{name} x1"] = measure(
                            echo, echo_target, baseline_plan, None, database=database
                        )
                    print(
                        f"{name}: {args.connections} connections x {args.messages} messages...",
                        flush=True,
                    )
                    phases[name] = measure(echo, echo_target, load_plan, None, database=database)

            run_echo("echo", echo_env)
            if args.stored_echo and os.environ.get("REDIS_URL"):
                run_echo(
                    "stored echo",
                    echo_env | {"ECHO_STORE": "postgres", "ECHO_DATABASE_URL": stored_echo_table()},
                    database=True,
                )
            print(
                f"platform: {args.connections} connections x {args.messages} messages...",
                flush=True,
            )
            phases["platform"] = measure(product, target, load_plan, tenant, args.profile)
        passed = report(
            load_plan,
            phases,
            sizes,
            server_knobs(limits, args.echo_layer, args.processes),
            machine_facts(database),
        )
    finally:
        finish(database, keep=args.keep_db)
        _forget_redis_keys()
    return 0 if passed else 1


def _forget_redis_keys() -> None:
    """Delete this run's keys (groups, rate-limit counters, cancel flags) from a shared Redis."""
    url, prefix = os.environ.get("REDIS_URL"), os.environ.get("CACHE_KEY_PREFIX", "")
    if not url or not prefix.startswith("bench-chat-"):
        return
    import redis

    try:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for first in range(0, len(keys), 500):
            client.delete(*keys[first : first + 500])
        client.close()
    except redis.RedisError as error:
        print(f"note: could not delete this run's Redis keys ({prefix}*): {error}")


if __name__ == "__main__":
    sys.exit(main())
