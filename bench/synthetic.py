"""A synthetic caseload in the record's schema (the migrations'), for benchmarks and for tests
that need a large record fast: rows written in bulk inserts, not cases recorded one by one.

30 managers under 6 supervisors, 3 programs, cases opened over two years, each with 15 events
(its stage moves, then notes), 2-3 referrals (12 providers, 4 services, 80 % answered), 2 goals,
3 follow-ups, its stage spells and, while open (55 %), 1-3 obligations, the soonest of which is
the case's `next_due`, as the recording activity writes it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.models import Stage, week_of
from store.tables import (
    case_command_keys,
    case_events,
    case_follow_ups,
    case_goals,
    case_obligations,
    case_referrals,
    case_stage_spells,
    cases,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
YEARS = 2
PROGRAMS = ("general", "housing", "recovery")
MANAGERS = [f"cm-{i:02d}" for i in range(30)]
PROVIDERS = [f"provider-{i}" for i in range(12)]
SERVICES = ("housing", "medical", "legal_aid", "employment")
PATH = (Stage.INTAKE, Stage.ASSESSMENT, Stage.PLANNING, Stage.COORDINATION, Stage.MONITORING)
SEALED = "casework-sealed/1:bench:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
CHUNK = 1000  # cases per bulk insert


def synthetic_case(i: int, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """One case's rows in every table the reports read (and those they do not, for realism)."""
    number = f"B-{i:07d}"
    manager = MANAGERS[i % len(MANAGERS)]
    opened = NOW - timedelta(days=rng.uniform(1, 365 * YEARS))
    # the stages it went through, each stay 1-40 days, until now
    moves, at = [], opened
    for stage in PATH[: rng.randint(1, len(PATH))]:
        if at >= NOW:
            break
        moves.append((at, stage))
        at += timedelta(days=rng.uniform(1, 40))
    if rng.random() < 0.45 and at < NOW:
        moves.append((at, Stage.CLOSED))
    closed_at = moves[-1][0] if moves[-1][1] is Stage.CLOSED else None
    last_moved = moves[-1][0]
    events = []
    for seq in range(1, 16):
        if seq <= len(moves):
            at, stage = moves[seq - 1]
            before = moves[seq - 2][1].value if seq > 1 else None
        else:  # notes and other work in the last stage
            at = last_moved + timedelta(hours=rng.uniform(0, 200))
            before = stage = moves[-1][1]
            before = before.value
        events.append(
            {
                "case_number": number,
                "seq": seq,
                "at": at,
                "action": "move" if seq <= len(moves) else "add_note",
                "actor_id": manager,
                "actor_role": "case_manager",
                "stage_before": before,
                "stage_after": stage.value,
                "change": SEALED,
                "recorded_at": at,
            }
        )
    stage = moves[-1][1]
    rows: dict[str, list[dict[str, Any]]] = {
        "cases": [
            {
                "number": number,
                "program": PROGRAMS[i % len(PROGRAMS)],
                "stage": stage.value,
                "manager": manager,
                "supervisor": f"sup-{i % len(MANAGERS) // 5}",
                "risk": rng.choice(("low", "medium", "high")),
                "opened_at": opened,
                "closed_at": closed_at,
                "outcome": "goals_met" if closed_at else None,
                "last_seq": 15,
                "state": SEALED,
                "updated_at": last_moved,
                "opened_week": week_of(opened),
                "closed_week": week_of(closed_at) if closed_at else None,
            }
        ],
        "case_events": events,
        # a key for each staff command (every event after the opening), as the recording keeps them
        "case_command_keys": [
            {
                "case_number": number,
                "command_key": f"{manager}:{number}-{e['seq']}",
                "seq": e["seq"],
                "command": None,
            }
            for e in events[1:]
        ],
        "case_referrals": [referral(number, n, opened, rng) for n in range(rng.randint(2, 3))],
        "case_goals": [
            {
                "case_number": number,
                "goal_id": f"g{n}",
                "description": SEALED,
                "objective": SEALED,
                "target_date": date(2027, 1, 1),
                "status": "open",
            }
            for n in (1, 2)
        ],
        "case_follow_ups": [
            {
                "case_number": number,
                "follow_up_id": f"F{n}",
                "kind": "home_visit",
                "due_at": opened + timedelta(days=10 * n),
                "status": "attended",
                "done_at": opened + timedelta(days=10 * n),
            }
            for n in (1, 2, 3)
        ],
        "case_stage_spells": spells(number, moves),
        "case_obligations": [] if closed_at else obligations(number, manager, last_moved, rng),
    }
    case_row = rows["cases"][0]
    for row in rows["case_referrals"]:  # each carries its case's scope, as the projection writes it
        row |= {key: case_row[key] for key in ("program", "manager", "supervisor")}
    # the soonest of what it owes, as the recording activity writes it (the list's sort key)
    rows["cases"][0]["next_due"] = min((o["due_at"] for o in rows["case_obligations"]), default=None)
    return rows


def referral(number: str, n: int, opened: datetime, rng: random.Random) -> dict[str, Any]:
    requested = opened + timedelta(hours=rng.uniform(1, 500))
    answered = requested + timedelta(hours=rng.uniform(1, 120)) if rng.random() < 0.8 else None
    return {
        "case_number": number,
        "referral_id": f"R{n}",
        "provider": rng.choice(PROVIDERS),
        "service": rng.choice(SERVICES),
        "status": rng.choice(("accepted", "declined", "completed")) if answered else "sent",
        "requested_at": requested,
        "answered_at": answered,
        "updated_at": answered or requested,
        "hours_to_answer": (answered - requested).total_seconds() / 3600 if answered else None,
    }


def spells(number: str, moves: list[tuple[datetime, Stage]]) -> list[dict[str, Any]]:
    rows = []
    for n, (entered, stage) in enumerate(moves):
        left = moves[n + 1][0] if n + 1 < len(moves) else None
        rows.append(
            {
                "case_number": number,
                "seq": n + 1,
                "stage": stage.value,
                "entered_at": entered,
                "left_at": left,
                "entered_epoch": entered.timestamp(),
                "days": (left - entered).total_seconds() / 86400 if left else None,
            }
        )
    return rows


def obligations(number: str, manager: str, since: datetime, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for n in range(rng.randint(1, 3)):
        level = rng.choice((None, None, 0, 1))
        rows.append(
            {
                "case_number": number,
                "obligation_key": f"stage_deadline:work {n}@{since.isoformat()}",
                "what": f"work {n}",
                "manager": manager,
                "due_at": since + timedelta(days=rng.uniform(1, 60)),
                "level": level,
                "notified": {None: None, 0: "supervisor", 1: "program_lead"}[level],
            }
        )
    return rows


TABLES = {
    t.name: t
    for t in (
        cases,
        case_events,
        case_command_keys,
        case_referrals,
        case_goals,
        case_follow_ups,
        case_stage_spells,
        case_obligations,
    )
}


def chunks(count: int) -> Iterator[dict[str, list[dict[str, Any]]]]:
    rng = random.Random(2026)
    for start in range(0, count, CHUNK):
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
        for i in range(start, min(start + CHUNK, count)):
            for name, part in synthetic_case(i, rng).items():
                rows[name] += part
        yield rows


async def fill(store: AsyncEngine, count: int) -> float:
    started = time.perf_counter()
    for rows in chunks(count):
        async with store.begin() as conn:
            for name, table in TABLES.items():
                if rows[name]:
                    await conn.execute(insert(table), rows[name])
    # Committed: PostgreSQL keeps the statistics ANALYZE gathers only if its transaction commits
    # (a connection closed without commit rolls them back, and the planner then guesses).
    async with store.begin() as conn:
        await conn.execute(text("ANALYZE"))
    return time.perf_counter() - started
