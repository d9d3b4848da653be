"""Who read which case, when: one row in `record_access` per read, from every way in."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.models import Actor
from store.db import writing
from store.tables import record_access


async def log_access(store: AsyncEngine, actor: Actor, number: str, what: str) -> None:
    async with writing(store) as conn:
        await conn.execute(
            insert(record_access).values(
                at=datetime.now(UTC),
                actor_id=actor.id,
                actor_role=actor.role.value,
                case_number=number,
                what=what,
            )
        )
