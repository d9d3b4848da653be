"""Bulk work: importing cases from CSV and reassigning a caseload, through `casework` itself
(which goes through the HTTP API with the caller's key)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from store.tables import cases
from tests.conftest import case_worker
from tests.integration.test_callback import DIRECTORY
from tests.integration.test_devserver import eventually
from tests.processes import casework
from tests.terminal import terminal
from workflows.search import CASE_MANAGER, workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_importing_a_csv_opens_good_rows_once_and_names_bad_ones(
    dev_env: WorkflowEnvironment, record_store: AsyncEngine, tmp_path: Path
) -> None:
    manager = f"m-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:6]
    sheet = tmp_path / "intake.csv"
    sheet.write_text(
        "intake_reference,program,given_name,family_name,birth_date,manager,supervisor,risk\n"
        f"WEB-{tag}-1,general,Rosa,Lima,1979-03-02,{manager},sam,low\n"
        f"WEB-{tag}-2,housing,Omar,Haddad,not-a-date,{manager},sam,low\n"
        f"WEB-{tag}-3,general,,Ivanova,,{manager},sam,medium\n"
        f"WEB-{tag}-4,housing,Ada,Obi,,{manager},sam,high\n"
        f",general,Noref,Person,,{manager},sam,low\n"
        f"WEB-{tag}-6,nowhere,Pat,Kim,,{manager},sam,low\n"
    )
    async with case_worker(dev_env, record_store, DIRECTORY) as ops, terminal(ops, record_store) as as_:
        env = as_("sam")  # a supervisor fills a new colleague's caseload
        first = await asyncio.to_thread(casework, "import", str(sheet), env=env)
        assert first.returncode == 1  # some rows were bad
        assert "2 opened, 0 already open, 4 failed" in first.stdout
        errors = first.stderr
        assert "row 3: client.birth_date" in errors or "row 3: birth_date" in errors
        assert "row 4: given_name: Field required" in errors or "row 4: client.given_name" in errors
        assert "row 6: intake_reference: required" in errors
        assert "row 7: unknown program 'nowhere'" in errors

        again = await asyncio.to_thread(casework, "import", str(sheet), env=env)
        assert "0 opened, 2 already open, 4 failed" in again.stdout  # nothing opened twice

        listed = await asyncio.to_thread(casework, "list", "--manager", manager, "--json", env=env)
        opened = {row["number"] for row in json.loads(listed.stdout)}
        ops.opened += list(opened)  # end them after the test
        assert len(opened) <= 2


async def test_a_supervisor_reassigns_a_caseload(
    dev_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    leaving, taking = f"m-{uuid.uuid4().hex[:6]}", f"m-{uuid.uuid4().hex[:6]}"
    async with case_worker(dev_env, record_store, DIRECTORY) as ops, terminal(ops, record_store) as as_:
        from tests.scenario import SAM, opening

        numbers = []
        for _ in range(3):
            command = opening("general", actor=SAM).model_copy(update={"manager": leaving})
            numbers.append((await ops.open_case(command)).case.number)
        staff, sam = as_("bob"), as_("sam")  # a case manager, a supervisor

        async def all_listed() -> bool:
            done = await asyncio.to_thread(casework, "list", "--manager", leaving, "--json", env=sam)
            return len(json.loads(done.stdout)) == 3

        await eventually(all_listed)
        refused = await asyncio.to_thread(
            casework, "reassign", "--from", leaving, "--to", taking, "--reason", "leaving the team", env=staff
        )
        assert refused.returncode == 4 and "only a supervisor or program lead may reassign" in refused.stderr

        moved = await asyncio.to_thread(
            casework, "reassign", "--from", leaving, "--to", taking, "--reason", "leaving the team", env=sam
        )
        assert moved.returncode == 0, moved.stderr
        assert "3 reassigned, 0 already theirs, 0 failed" in moved.stdout
        again = await asyncio.to_thread(
            casework, "reassign", "--from", leaving, "--to", taking, "--reason", "leaving the team", env=sam
        )
        assert "0 reassigned" in again.stdout and "0 failed" in again.stdout  # nothing moves twice
        for number in numbers:
            described = await dev_env.client.get_workflow_handle(workflow_id(number)).describe()
            assert described.typed_search_attributes.get(CASE_MANAGER) == taking
            assert (await ops.view(number)).case.manager == taking

        async def recorded() -> bool:
            async with record_store.connect() as conn:
                managers = (
                    await conn.execute(select(cases.c.manager).where(cases.c.number.in_(numbers)))
                ).scalars()
                return set(managers) == {taking}

        await eventually(recorded)
