"""What the benchmark scripts share: a database of their own and a server process to measure.

Imported by the scripts as ``benchlib`` (a script's own folder is first on ``sys.path``).

* ``prepare_database(name, keep=...)``: with ``DATABASE_URL`` set, the database ``name`` on the
  same server is dropped and recreated through the server's ``postgres`` database (the database
  named in the URL is never opened) and ``DATABASE_URL`` points at it; without it, the embedded
  PostgreSQL starts under a temporary ``DATA_DIR``, removed at exit unless ``keep``.
* ``server_process(argv, env, health_path)``: start a server on a free port, wait for it to
  answer, stop it with SIGINT first so that its exit hooks run.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

BASE_DIR = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT_S = 90.0


def ms(start_ns: int) -> float:
    """Milliseconds since ``start_ns`` (``time.perf_counter_ns()``)."""
    return (time.perf_counter_ns() - start_ns) / 1_000_000


@dataclass(frozen=True)
class Summary:
    """Percentiles of timings in milliseconds."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> Summary:
        if not values_ms:
            raise ValueError("no samples")
        if len(values_ms) == 1:
            only = values_ms[0]
            return cls(1, only, only, only, only, only)
        cuts = statistics.quantiles(values_ms, n=100, method="inclusive")
        return cls(
            count=len(values_ms),
            mean=statistics.fmean(values_ms),
            p50=cuts[49],
            p95=cuts[94],
            p99=cuts[98],
            max=max(values_ms),
        )


# --------------------------------------------------------------------------------------------
# The bench database


@dataclass(frozen=True)
class BenchDatabase:
    """Where the bench runs. ``admin_url`` is None with the embedded server."""

    name: str
    url: str | None
    admin_url: str | None
    data_dir: Path | None

    @property
    def description(self) -> str:
        if self.url is None:
            return f"embedded PostgreSQL under {self.data_dir}"
        parts = urlsplit(self.url)
        return f"{parts.hostname or 'local socket'}:{parts.port or 5432}/{self.name}"

    def drop(self) -> None:
        """Drop the bench database (nothing to do with the embedded server)."""
        if self.admin_url is not None:
            _admin_execute(self.admin_url, _drop_statement(self.name))


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _psycopg_url(url: str) -> str:
    """libpq understands postgres:// and postgresql://, not Django-style aliases."""
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme in {"postgres", "postgresql", "pgsql"} else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def _admin_execute(admin_url: str, statement: sql.Composed) -> None:
    with psycopg.connect(_psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(statement)


def _drop_statement(name: str) -> sql.Composed:
    return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))


def prepare_database(name: str, *, keep: bool, data_dir_prefix: str) -> BenchDatabase:
    """A fresh bench database for this process and the servers it starts (before setup)."""
    source = os.environ.get("DATABASE_URL", "").strip()
    if not source:
        data_dir = Path(tempfile.mkdtemp(prefix=data_dir_prefix))
        os.environ["DATA_DIR"] = str(data_dir)
        if not keep:
            # Registered before django.setup(), so it runs after pgserver's own exit hook.
            atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
        return BenchDatabase(name=name, url=None, admin_url=None, data_dir=data_dir)

    if urlsplit(source).path.lstrip("/") == name:
        print(f"note: DATABASE_URL already names {name}; it is recreated")
    bench_url = _with_database(source, name)
    admin_url = _with_database(source, "postgres")
    _admin_execute(admin_url, _drop_statement(name))
    _admin_execute(admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    os.environ["DATABASE_URL"] = bench_url
    return BenchDatabase(name=name, url=bench_url, admin_url=admin_url, data_dir=None)


def setup_django() -> None:
    sys.path.insert(0, str(BASE_DIR))
    os.chdir(BASE_DIR)
    import django

    django.setup()


# --------------------------------------------------------------------------------------------
# Server processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


@dataclass(frozen=True)
class ServerProcess:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def server_process(
    argv: list[str],
    env: dict[str, str],
    *,
    health_path: str,
    log_prefix: str,
    after_stop: Callable[[ServerProcess], None] | None = None,
) -> Iterator[ServerProcess]:
    """Start ``argv`` plus ``--host``/``--port`` on a free port, with its output in a log file;
    yield it once ``health_path`` answers 200; stop it (then ``after_stop``, which may read the
    log) and remove the log at the end."""
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix=log_prefix, suffix=".log")
    os.close(fd)
    log_path = Path(log_name)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1", "--port", str(port)],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(port, process, log_path)
    try:
        _wait_until_healthy(server, health_path)
        yield server
    finally:
        stop(process)
        try:
            if after_stop is not None:
                after_stop(server)
        finally:
            log_path.unlink(missing_ok=True)


@contextmanager
def product_server(health_path: str = "/healthz") -> Iterator[str]:
    """Start the product (``manage.py serve --no-worker``) with this process's environment;
    yield its base URL once ``health_path`` answers."""
    with server_process(
        [sys.executable, "manage.py", "serve", "--no-worker"],
        os.environ.copy(),
        health_path=health_path,
        log_prefix="agentfactory-bench-serve-",
    ) as server:
        yield server.base_url


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT first: uvicorn re-raises the signal it caught once shut down, and only SIGINT (as
    KeyboardInterrupt) lets the process run its exit hooks, which release the embedded server."""
    for stopping, timeout in (
        (lambda: process.send_signal(signal.SIGINT), 15.0),
        (process.terminate, 5.0),
        (process.kill, 5.0),
    ):
        if process.poll() is not None:
            return
        stopping()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        return


def _wait_until_healthy(server: ServerProcess, health_path: str) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the server exited with code {server.process.returncode}:\n{tail(server.log_path)}"
            )
        try:
            if httpx.get(server.base_url + health_path, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer {health_path} in time:\n{tail(server.log_path)}")


def close_connections() -> None:
    """Release this process's connections so the bench database can be dropped."""
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()


def finish(database: BenchDatabase, *, keep: bool) -> None:
    """At the end of a run: close this process's connections; drop the bench database, or say
    where it (or the embedded server's DATA_DIR) was kept."""
    close_connections()
    if database.admin_url is not None:
        if keep:
            print(f"kept database {database.name}")
        else:
            database.drop()
    elif keep:
        print(f"kept DATA_DIR {database.data_dir}")
