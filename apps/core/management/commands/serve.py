"""Serve HTTP and websockets from one ASGI process (uvicorn). With a real broker configured, a
Celery worker is started alongside and stopped with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Serve the product on one ASGI process (HTTP + websockets)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-worker", action="store_true", help="Do not start a Celery worker."
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=int(os.environ.get("WEB_PROCESSES", "1")),
            help="ASGI processes sharing the port (default WEB_PROCESSES or 1). More than one "
            "needs REDIS_URL: sockets, rate limits and cancels are shared through Redis.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        processes = options["processes"]
        if processes < 1:
            raise CommandError("--processes must be at least 1.")
        if processes > 1 and not settings.REDIS_URL:
            raise CommandError(
                "Several processes need REDIS_URL: without it each process has its own channel "
                "layer, cache and rate limits."
            )
        worker = None
        if not settings.CELERY_TASK_ALWAYS_EAGER and not options["no_worker"]:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--loglevel=INFO",
                    "--concurrency=2",
                ],
                env=os.environ.copy(),
            )
        # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into a normal exit lets
        # exit hooks run, so the embedded PostgreSQL is released (and stopped when last out).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        self.stdout.write(f"Serving on http://{options['host']}:{options['port']}/ (Ctrl+C stops)")
        try:
            uvicorn.run(
                "config.asgi:application",
                host=options["host"],
                port=options["port"],
                ws="websockets-sansio",
                # Past this a frame closes the socket (1009); below it, the chat's own limit
                # answers with an error and the socket stays usable (docs/api/websocket.md).
                ws_max_size=settings.WEBSOCKET_MAX_BYTES,
                ws_per_message_deflate=settings.WEBSOCKET_COMPRESSION,
                lifespan="off",
                log_config=None,
                proxy_headers=True,
                forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
                workers=processes,
            )
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=20)
