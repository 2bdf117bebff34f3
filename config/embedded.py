"""Embedded services for a machine with nothing installed.

With no ``DATABASE_URL`` the product starts its own PostgreSQL (the ``pgserver`` package ships the
binaries, pgvector included) under ``DATA_DIR/postgres``. Each process holds a handle; the server
stops when the last process using it exits, so ``make run`` leaves nothing behind.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EMBEDDED_DATABASE_NAME = "agentfactory"
_handles: list[Any] = []  # keeps the server alive for as long as this process runs


def embedded_database_url(data_dir: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR in containers
        import pgserver

        pgdata = data_dir / "postgres"
        pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    _handles.append(server)
    _ensure_database(server.get_uri("postgres"), EMBEDDED_DATABASE_NAME)
    return str(server.get_uri(EMBEDDED_DATABASE_NAME))


def _ensure_database(admin_uri: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            logger.info("embedded database %s created", name)
