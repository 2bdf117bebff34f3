"""Benchmark: tenant provisioning as the number of tenants grows, and the cost of tenant routing.

Runs against its own database, never a developer's:

* with ``DATABASE_URL`` set, a database named ``agentfactory_bench`` on the same server is dropped
  and recreated (through the server's ``postgres`` database) and, unless ``--keep-db``, dropped
  again at the end;
* without it, the embedded PostgreSQL starts under a temporary ``DATA_DIR``.

Usage (from the repository root)::

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/agentfactory_dev
    .venv/bin/python bench/tenants.py
    .venv/bin/python bench/tenants.py --levels 10,100,200 --samples 10 --requests 1000 --keep-db

It prints figures; it asserts nothing except the provisioning target (PASS/FAIL).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
from benchlib import (
    BenchDatabase,
    Summary,
    finish,
    prepare_database,
    product_server,
    setup_django,
)
from benchlib import ms as _ms

BENCH_DATABASE = "agentfactory_bench"
TARGET_PROVISION_MS = 2000.0
TARGET_LEVEL = 200
WARMUP_REQUESTS = 50
FAST_HASHER = "django.contrib.auth.hashers.MD5PasswordHasher"
TENANT_PATH = "/api/v1/tenant/"
PLAIN_PATH = "/healthz"


# --------------------------------------------------------------------------------------------
# Figures


@dataclass
class ProvisionLevel:
    existing: int
    total_ms: list[float] = field(default_factory=list)
    clone_ms: list[float] = field(default_factory=list)


@dataclass
class ProvisionResult:
    levels: list[ProvisionLevel]
    first_ms: float
    fill_ms: list[float]
    template_tables: int
    hasher_ms: float


@dataclass
class HttpResult:
    tenant_ms: list[float]
    plain_ms: list[float]
    conn_max_age: str


# --------------------------------------------------------------------------------------------
# Environment and database


def prepare_environment(keep_db: bool) -> BenchDatabase:
    """Point this process (and the server it starts) at a fresh bench database, before setup."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ["AGENT_FACTORY_QUIET_STARTUP"] = "1"
    os.environ["LOG_LEVEL"] = "WARNING"
    # Production-like request handling: DEBUG wraps every cursor and records every query.
    os.environ.setdefault("DJANGO_DEBUG", "false")
    return prepare_database(BENCH_DATABASE, keep=keep_db, data_dir_prefix="agentfactory-bench-")


# --------------------------------------------------------------------------------------------
# Provisioning


def _slug(index: int) -> str:
    return f"bench-{index:04d}"


@contextmanager
def _clone_timer(sink: list[float]) -> Iterator[None]:
    """Time the schema clone inside tenant_provision, without changing what it does."""
    from apps.tenants import services

    original = services.clone_template_schema

    def timed(target: str) -> None:
        start = time.perf_counter_ns()
        try:
            original(target)
        finally:
            sink.append(_ms(start))

    services.clone_template_schema = timed
    try:
        yield
    finally:
        services.clone_template_schema = original


def _default_hasher_ms() -> float:
    """What one password hash costs with the project's configured hasher (excluded from figures)."""
    from django.contrib.auth.hashers import get_hasher

    hasher = get_hasher("default")
    start = time.perf_counter_ns()
    hasher.encode("bench-" + secrets.token_urlsafe(12), hasher.salt())
    return _ms(start)


def _template_tables() -> int:
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            [settings.TENANT_TEMPLATE_SCHEMA],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def run_provisioning(levels: list[int], samples: int) -> ProvisionResult:
    from django.core.management import call_command
    from django.test.utils import override_settings

    from apps.tenants.services import tenant_provision

    hasher_ms = _default_hasher_ms()
    # The admin's password hash is not what this benchmark is about: use a cheap hasher. Changing
    # the setting this way also resets Django's cached hashers (setting_changed).
    override_settings(PASSWORD_HASHERS=[FAST_HASHER]).enable()

    print("bootstrap: migrating the public and template schemas...", flush=True)
    start = time.perf_counter_ns()
    call_command("bootstrap", verbosity=0, stdout=io.StringIO())
    print(f"bootstrap: done in {_ms(start) / 1000:.1f} s", flush=True)

    password = "bench-" + secrets.token_urlsafe(16)
    results = {level: ProvisionLevel(existing=level) for level in levels}
    fill_ms: list[float] = []
    first_ms = 0.0
    clone_sink: list[float] = []
    total = levels[-1] + samples
    created = 0
    with _clone_timer(clone_sink):
        while created < total:
            level = next(
                (lvl for lvl in levels if lvl <= created < lvl + samples),
                None,
            )
            index = created + 1
            clone_sink.clear()
            start = time.perf_counter_ns()
            tenant_provision(
                slug=_slug(index),
                name=f"Bench {index}",
                admin_email=f"admin@{_slug(index)}.example",
                admin_password=password,
            )
            elapsed = _ms(start)
            created += 1
            if index == 1:
                first_ms = elapsed
            if level is not None:
                results[level].total_ms.append(elapsed)
                results[level].clone_ms.extend(clone_sink)
            elif index > 1:
                fill_ms.append(elapsed)
            if created % 25 == 0 or created == total:
                print(f"provisioned {created}/{total} tenants (last: {elapsed:.0f} ms)", flush=True)
    return ProvisionResult(
        levels=[results[level] for level in levels],
        first_ms=first_ms,
        fill_ms=fill_ms,
        template_tables=_template_tables(),
        hasher_ms=hasher_ms,
    )


# --------------------------------------------------------------------------------------------
# HTTP


def run_http(base_url: str, tenant_host: str, expected_slug: str, requests: int) -> HttpResult:
    tenant_headers = {"Host": tenant_host, "Accept": "application/json"}
    plain_headers = {"Accept": "application/json"}

    with httpx.Client(base_url=base_url, timeout=10.0) as client:

        def tenant() -> httpx.Response:
            return client.get(TENANT_PATH, headers=tenant_headers)

        def plain() -> httpx.Response:
            return client.get(PLAIN_PATH, headers=plain_headers)

        first = tenant()
        if first.status_code != 200 or first.json().get("slug") != expected_slug:
            raise RuntimeError(
                f"GET {TENANT_PATH} on {tenant_host} answered {first.status_code}: "
                f"{first.text[:300]}"
            )
        for _ in range(WARMUP_REQUESTS):
            _check(tenant())
            _check(plain())

        tenant_ms: list[float] = []
        plain_ms: list[float] = []
        timed: list[tuple[Callable[[], httpx.Response], list[float]]] = [
            (tenant, tenant_ms),
            (plain, plain_ms),
        ]
        for i in range(requests):
            # Alternate which goes first so neither always follows the other.
            order = timed if i % 2 == 0 else timed[::-1]
            for call, sink in order:
                start = time.perf_counter_ns()
                response = call()
                sink.append(_ms(start))
                _check(response)
    return HttpResult(
        tenant_ms=tenant_ms,
        plain_ms=plain_ms,
        conn_max_age=os.environ.get("DATABASE_POOL_MAX_SIZE", "0 (default: no pool)"),
    )


def _check(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:300]}"
        )


# --------------------------------------------------------------------------------------------
# Report


def _machine_facts(database: BenchDatabase) -> list[tuple[str, str]]:
    import django
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        row = cursor.fetchone()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("nproc", str(affinity)),
        ("cpu", platform.processor() or platform.machine()),
        ("os", platform.platform()),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("django", django.get_version()),
        ("postgresql", str(row[0]) if row else "?"),
        ("database", database.description),
        ("settings", f"{os.environ['DJANGO_SETTINGS_MODULE']} (DEBUG={settings.DEBUG})"),
    ]


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(
        cell.ljust(width) if i == 0 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [_row(header, widths), _row(["-" * w for w in widths], widths)]
    lines.extend(_row(row, widths) for row in rows)
    return "\n".join(lines)


def report(
    provision: ProvisionResult,
    http: HttpResult | None,
    facts: list[tuple[str, str]],
    samples: int,
) -> bool:
    print()
    print("=" * 78)
    print("Tenant provisioning (wall time of tenant_provision, one call at a time)")
    print(
        f"  password hasher during the bench: {FAST_HASHER.rsplit('.', 1)[-1]} "
        f"(the configured default costs {provision.hasher_ms:.0f} ms per hash, not included)"
    )
    print(f"  template schema: {provision.template_tables} tables")
    print(f"  first tenant (reads the template catalog): {provision.first_ms:.0f} ms")
    if provision.fill_ms:
        fill = Summary.of(provision.fill_ms)
        print(
            f"  untimed fill tenants: {fill.count}, mean {fill.mean:.0f} ms, max {fill.max:.0f} ms"
        )
    print()
    rows = []
    for level in provision.levels:
        total = Summary.of(level.total_ms)
        clone = Summary.of(level.clone_ms) if level.clone_ms else None
        rows.append(
            [
                str(level.existing),
                f"{level.existing + 1}..{level.existing + samples}",
                f"{total.mean:.1f}",
                f"{total.p50:.1f}",
                f"{total.p95:.1f}",
                f"{total.max:.1f}",
                f"{clone.mean:.1f}" if clone else "-",
            ]
        )
    print(
        _table(
            ["existing", "tenants", "mean ms", "p50 ms", "p95 ms", "max ms", "clone mean ms"], rows
        )
    )

    verdict_level = next(
        (lvl for lvl in provision.levels if lvl.existing == TARGET_LEVEL),
        max(provision.levels, key=lambda lvl: lvl.existing),
    )
    worst = max(verdict_level.total_ms)
    passed = worst < TARGET_PROVISION_MS
    print()
    print(
        f"target: < {TARGET_PROVISION_MS:.0f} ms per new tenant with {verdict_level.existing} "
        f"existing (judged on the slowest sample, {worst:.0f} ms): {'PASS' if passed else 'FAIL'}"
    )
    if verdict_level.existing != TARGET_LEVEL:
        print(f"  note: level {TARGET_LEVEL} was not measured; judged on the highest level")

    if http is not None:
        tenant = Summary.of(http.tenant_ms)
        plain = Summary.of(http.plain_ms)
        print()
        print("=" * 78)
        print(
            f"HTTP latency, one keep-alive client, {tenant.count} interleaved requests each "
            f"after {WARMUP_REQUESTS} warm-up (DATABASE_POOL_MAX_SIZE={http.conn_max_age})"
        )
        print()
        print(
            _table(
                ["endpoint", "p50 ms", "p95 ms", "p99 ms", "mean ms", "max ms"],
                [
                    [
                        f"tenant  GET {TENANT_PATH} (Host: {_slug(1)}.localhost)",
                        f"{tenant.p50:.2f}",
                        f"{tenant.p95:.2f}",
                        f"{tenant.p99:.2f}",
                        f"{tenant.mean:.2f}",
                        f"{tenant.max:.2f}",
                    ],
                    [
                        f"plain   GET {PLAIN_PATH}",
                        f"{plain.p50:.2f}",
                        f"{plain.p95:.2f}",
                        f"{plain.p99:.2f}",
                        f"{plain.mean:.2f}",
                        f"{plain.max:.2f}",
                    ],
                ],
            )
        )
        print()
        print(
            f"ratio tenant/plain: p50 {tenant.p50 / plain.p50:.2f}x, "
            f"p95 {tenant.p95 / plain.p95:.2f}x"
        )

    print()
    print("=" * 78)
    print("Machine")
    width = max(len(name) for name, _ in facts)
    for name, value in facts:
        print(f"  {name.ljust(width)}  {value}")
    print("=" * 78)
    return passed


# --------------------------------------------------------------------------------------------
# Entry point


def _levels(value: str) -> list[int]:
    try:
        levels = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError("levels are comma-separated integers") from exc
    if not levels or levels[0] < 0:
        raise argparse.ArgumentTypeError("give at least one level, none negative")
    return levels


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--levels",
        type=_levels,
        default=_levels("10,100,200"),
        help="existing-tenant counts at which to time provisioning (default 10,100,200)",
    )
    parser.add_argument(
        "--samples", type=_positive, default=10, help="tenants timed per level (default 10)"
    )
    parser.add_argument(
        "--requests",
        type=_positive,
        default=1000,
        help="timed requests per endpoint (default 1000)",
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="keep the bench database (or DATA_DIR) at the end"
    )
    args = parser.parse_args(argv)
    overlapping = [
        (a, b) for a, b in zip(args.levels, args.levels[1:], strict=False) if b < a + args.samples
    ]
    if overlapping:
        parser.error(f"levels {overlapping[0]} are closer than --samples {args.samples}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    database = prepare_environment(args.keep_db)
    print(f"bench database: {database.description}", flush=True)
    passed = False
    try:
        setup_django()
        provision = run_provisioning(args.levels, args.samples)
        print(f"HTTP: starting the server, {args.requests} requests per endpoint...", flush=True)
        with product_server(PLAIN_PATH) as base_url:
            http = run_http(base_url, f"{_slug(1)}.localhost", _slug(1), args.requests)
        passed = report(provision, http, _machine_facts(database), args.samples)
    finally:
        finish(database, keep=args.keep_db)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
