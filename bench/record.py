"""A fresh record for a benchmark: a SQLite file in a temporary folder, or a new PostgreSQL
database (dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from store.db import async_url


async def with_database(kind: str, postgres: str, tmp: Path) -> tuple[str, Callable[[], Awaitable[None]]]:
    """A fresh database of `kind`, and how to drop it."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'record.db'}", _nothing
    admin = create_async_engine(async_url(postgres), isolation_level="AUTOCOMMIT")
    name = f"casework_bench_{uuid.uuid4().hex[:8]}"
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))

    async def drop() -> None:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

    return make_url(async_url(postgres)).set(database=name).render_as_string(hide_password=False), drop


async def _nothing() -> None:
    return None
