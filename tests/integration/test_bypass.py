"""Ways around the door, tried through the real entry points on the dev server: each is
refused, and writes nothing (no event in Temporal's history, no row in the record).

The rest of the catalogue lives beside the door it tries: a forged, unsigned, expired or
misdirected actor sent as a raw Temporal update (tests/workflow/test_door.py); decoding
without credentials or with another manager's (tests/integration/test_codec.py and, in
Chromium, tests/e2e/test_ui_codec.py); the CLI without a credential or with a made-up one
(tests/e2e/test_cli.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from domain import commands as c
from domain.models import RiskLevel
from store.tables import case_events, cases, record_access
from tests.conftest import TrackingOps, case_worker, recorded
from tests.integration.test_api import CLIENT
from tests.integration.test_callback import DIRECTORY, serving
from tests.processes import casework, environment
from tests.scenario import ALICE, assessment, goals, opening
from tests.terminal import KEYS
from workflows.search import workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Door:
    ops: TrackingOps
    http: httpx.AsyncClient
    base: str
    store: AsyncEngine
    env: WorkflowEnvironment

    def cli(self, who: str) -> dict[str, str]:
        return environment(api_url=self.base, api_key=f"key-{who}")

    async def footprint(self, number: str) -> tuple[int, int]:
        """(events in the record, events in Temporal's history) of a case, once all are recorded."""
        await recorded(self.ops, number)
        async with self.store.connect() as conn:
            rows = await conn.scalar(
                select(func.count()).select_from(case_events).where(case_events.c.case_number == number)
            )
        described = await self.env.client.get_workflow_handle(workflow_id(number)).describe()
        return int(rows or 0), described.raw_description.workflow_execution_info.history_length

    async def reads_logged(self, who: str, number: str) -> list[str]:
        async with self.store.connect() as conn:
            found = await conn.execute(
                select(record_access.c.what).where(
                    record_access.c.actor_id == who, record_access.c.case_number == number
                )
            )
            return [row.what for row in found]


@pytest_asyncio.fixture(loop_scope="session")
async def door(dev_env: WorkflowEnvironment, record_store: AsyncEngine) -> AsyncIterator[Door]:
    async with case_worker(dev_env, record_store, DIRECTORY) as ops:
        ops.directory = DIRECTORY
        async with (
            serving(create_app(ops, DIRECTORY, KEYS, record_store)) as base,
            httpx.AsyncClient(base_url=base, timeout=30) as http,
        ):
            yield Door(ops, http, base, record_store, dev_env)


async def a_high_risk_plan(door: Door) -> str:
    number = (await door.ops.open_case(opening("housing", risk=RiskLevel.HIGH))).case.number
    for change in (
        c.Accept(actor=ALICE),
        c.CompleteAssessment(actor=ALICE, assessment=assessment(RiskLevel.HIGH)),
        c.SubmitPlan(actor=ALICE, goals=goals()),
    ):
        await door.ops.act(number, change)
    return number


async def test_a_case_managers_key_cannot_approve_her_own_high_risk_plan(door: Door) -> None:
    number = await a_high_risk_plan(door)
    before = await door.footprint(number)
    refused = await asyncio.to_thread(casework, "approve-plan", number, env=door.cli("alice"))
    assert refused.returncode == 4, refused.stderr
    assert "high-risk plan needs a supervisor" in refused.stderr
    assert await door.footprint(number) == before  # nothing written
    done = await asyncio.to_thread(casework, "approve-plan", number, env=door.cli("sam"))
    assert done.returncode == 0, done.stderr  # the supervisor's key may


async def test_the_cli_cannot_claim_a_role_or_act_without_a_key(door: Door) -> None:
    number = await a_high_risk_plan(door)
    before = await door.footprint(number)
    claimed = await asyncio.to_thread(
        casework, "approve-plan", number, "--as", "alice:supervisor", env=door.cli("alice")
    )
    assert claimed.returncode == 2 and "No such option: --as" in claimed.stderr
    keyless = environment(api_url=door.base)
    for attempt in (("approve-plan", number), ("add-note", number, "--text", "hello")):
        refused = await asyncio.to_thread(casework, *attempt, env=keyless)
        assert refused.returncode == 4 and "not signed in" in refused.stderr
    forged = environment(api_url=door.base, api_key="key-mallory")
    refused = await asyncio.to_thread(casework, "approve-plan", number, env=forged)
    assert refused.returncode == 4 and "unknown API key" in refused.stderr
    assert await door.footprint(number) == before


async def test_another_manager_cannot_reach_a_case_through_its_intake_reference(door: Door) -> None:
    form = {
        "program": "general",
        "client": CLIENT,
        "supervisor": "sam",
        "intake_reference": f"F-{uuid.uuid4().hex[:8]}",
    }
    opened = await door.http.post("/cases", json=form, headers={"Authorization": "Bearer key-alice"})
    assert opened.status_code == 201, opened.text
    number = opened.json()["case"]["number"]
    door.ops.opened.append(number)
    before = await door.footprint(number)

    bobs = await door.http.post("/cases", json=form, headers={"Authorization": "Bearer key-bob"})
    assert bobs.status_code == 409 and "already used by another case" in bobs.json()["detail"]
    assert "Nasser" not in bobs.text and "555-0142" not in bobs.text  # nothing of alice's client
    other_client = form | {"client": CLIENT | {"given_name": "Somebody"}}
    reused = await door.http.post("/cases", json=other_client, headers={"Authorization": "Bearer key-alice"})
    assert reused.status_code == 409 and "for another client" in reused.json()["detail"]
    assert await door.footprint(number) == before
    assert await door.reads_logged("bob", number) == []  # bob read nothing
    async with door.store.connect() as conn:
        same_reference = await conn.scalar(
            select(func.count()).select_from(cases).where(cases.c.number == number)
        )
    assert same_reference == 1


async def test_cli_reads_are_scoped_and_logged(door: Door) -> None:
    number = (await door.ops.open_case(opening("general"))).case.number
    await recorded(door.ops, number)
    for read in (("show", number), ("history", number), ("notes", number)):
        done = await asyncio.to_thread(casework, *read, env=door.cli("alice"))
        assert done.returncode == 0, done.stderr
    assert {"view", "events", "notes"} <= set(await door.reads_logged("alice", number))
    hidden = await asyncio.to_thread(casework, "show", number, env=door.cli("bob"))
    assert hidden.returncode == 3 and f"no case {number}" in hidden.stderr
    assert "Okafor" not in hidden.stdout + hidden.stderr
    assert await door.reads_logged("bob", number) == []
