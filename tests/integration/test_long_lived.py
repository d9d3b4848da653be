"""Cases that live for years, on the dev server: commands retried safely when no worker
answers, honest status when a workflow is lost, restore from the record, and a case given
thousands of long notes that stays alive and pages through all of them."""

from __future__ import annotations

import asyncio
import json
import shlex
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from domain import commands as c
from domain.errors import Refusal
from domain.models import Stage
from service.refusals import CaseError
from tests.conftest import TrackingOps, case_worker, recorded, recorded_events
from tests.integration.test_callback import DIRECTORY, serving
from tests.processes import casework, environment
from tests.scenario import ALICE, PROGRAMS, SAM, TO_MONITORING, opening
from tests.terminal import KEYS
from worker import build_worker
from workflows.search import workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")
QUICK = timedelta(seconds=2)  # how long a command waits for a worker in these tests


def cli_env(api_url: str) -> dict[str, str]:
    """`casework` signed in as alice, through the API at api_url."""
    return environment(api_url=api_url, api_key="key-alice")


async def notes_with(store: AsyncEngine, number: str, text: str) -> int:
    rows = await recorded_events(store, number)
    return sum(r["action"] == "add_note" and r["change"]["text"] == text for r in rows)


async def test_a_command_sent_while_no_worker_runs_applies_once_when_retried_with_its_key(
    dev_env: WorkflowEnvironment, record_store: AsyncEngine, database_url: str
) -> None:
    task_queue = f"retry-{uuid.uuid4().hex[:8]}"
    ops = TrackingOps(dev_env.client, PROGRAMS, task_queue, DIRECTORY, record_store, command_timeout=QUICK)
    async with build_worker(dev_env.client, record_store, task_queue, directory=DIRECTORY):
        number = (await ops.open_case(opening("general"))).case.number
        await ops.act(number, c.Accept(actor=ALICE))
        await recorded(ops, number)
    # the worker is gone: the CLI and the API say so plainly, with the key to retry with
    cli_text, api_text = "called her from the CLI", "called her through the API"
    note = ("add-note", number, "--text", cli_text)
    app = create_app(ops, DIRECTORY, KEYS, record_store)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        env = cli_env(base)
        timed_out = await asyncio.to_thread(casework, "--key", "cli-key-1", *note, env=env)
        assert timed_out.returncode == 6, timed_out.stderr
        assert "no worker took the command" in timed_out.stderr
        # the retry line pastes as printed: the note's spaces are quoted
        retry_line = timed_out.stderr.split("Retry: ", 1)[1].strip()
        assert retry_line == f"casework --key cli-key-1 add-note {number} --text '{cli_text}'"
        headers = {"Authorization": "Bearer key-alice", "Idempotency-Key": "api-key-0001"}
        path = f"/cases/{number}/add-note"
        unavailable = await http.post(path, json={"text": api_text}, headers=headers)
        assert unavailable.status_code == 503, unavailable.text
        problem = unavailable.json()
        assert unavailable.headers["content-type"] == "application/problem+json"
        assert problem["idempotency_key"] == "api-key-0001"
        assert "same idempotency key is safe" in problem["detail"]

        # a case opened now is started: the answer says so, and not to open it again
        with pytest.raises(
            CaseError, match=r"is opened, but no worker has taken it.*Do not open it again"
        ) as no:
            await ops.open_case(opening("general"))
        waiting = str(no.value).split()[1]

        # the worker returns: the waiting commands apply; the retries are answered, not applied again
        async with build_worker(dev_env.client, record_store, task_queue, directory=DIRECTORY):
            assert (await ops.view(waiting)).case.stage is Stage.INTAKE
            # an open retried with its key finds the case the first one opened
            # (a key of this run's own: the same key on another run of the test names its case)
            form = (
                "--key",
                f"open-{uuid.uuid4().hex[:12]}",
                "open",
                "--given-name",
                "Ana",
                "--family-name",
                "Key",
            )
            first = await asyncio.to_thread(casework, *form, "--supervisor", "sam", env=env)
            reopened = await asyncio.to_thread(casework, *form, "--supervisor", "sam", env=env)
            assert first.returncode == reopened.returncode == 0, first.stderr + reopened.stderr
            number_of_key = first.stdout.split()[2]
            assert first.stdout.startswith("opened case K-")
            assert reopened.stdout.startswith(f"already open (same key): case {number_of_key}")
            retried = await asyncio.to_thread(casework, *shlex.split(retry_line)[1:], env=env)
            assert retried.returncode == 0, retried.stderr
            assert "add_note had already been done" in retried.stdout  # the kept command applied it
            again = await http.post(path, json={"text": api_text}, headers=headers)
            assert again.status_code == 200 and again.headers["Idempotency-Key"] == "api-key-0001"
            assert again.json()["repeated"] is True
            once_more = await http.post(path, json={"text": api_text}, headers=headers)
            assert once_more.json()["seq"] == again.json()["seq"]
            await recorded(ops, number)
            assert await notes_with(record_store, number, cli_text) == 1
            assert await notes_with(record_store, number, api_text) == 1
            for opened in (number, waiting, number_of_key):
                await dev_env.client.get_workflow_handle(workflow_id(opened)).terminate(
                    reason="test finished"
                )
            # the key's case has ended: the key opens no second one, and the answer says why
            ended = await asyncio.to_thread(casework, *form, "--supervisor", "sam", env=env)
            assert (
                ended.returncode == 5
                and "this key opened it before, and it is no longer running" in ended.stderr
            )


async def test_a_terminated_case_says_so_and_a_supervisor_restores_it_with_its_deadlines(
    dev_env: WorkflowEnvironment, record_store: AsyncEngine, database_url: str
) -> None:
    async with case_worker(dev_env, record_store) as ops:
        number = (await ops.open_case(opening("general"))).case.number
        noted = await ops.act(
            number, c.AddNote(actor=ALICE, text="before the loss"), key="alice:lost-note-01"
        )
        before = await ops.do(number, c.Accept(actor=ALICE))
        await recorded(ops, number)
        with pytest.raises(CaseError, match="is running: there is nothing to restore"):
            await ops.restore(number, SAM, "checking")
        await dev_env.client.get_workflow_handle(workflow_id(number)).terminate(reason="operator mistake")

        lost = await ops.view(number)
        assert lost.status == "terminated" and lost.case.stage is Stage.ASSESSMENT
        assert lost.allowed_actions == [] and lost.next_action is None  # nothing runs it until restored
        assert lost.next_deadline == before.next_deadline  # what it owes still stands
        with pytest.raises(CaseError, match=r"its workflow was terminated.*casework restore"):
            await ops.act(number, c.AddNote(actor=ALICE, text="hello?"))
        async with serving(create_app(ops, DIRECTORY, KEYS, record_store)) as base:
            shown = await asyncio.to_thread(casework, "show", number, env=cli_env(base))
            assert shown.returncode == 0 and "terminated" in shown.stdout and "archived" not in shown.stdout
            listed = await asyncio.to_thread(
                casework, "list", "--sort", "newest", "--json", env=cli_env(base)
            )
        # the list reads the record, where the case is open in assessment; `show` says what Temporal did
        assert {"number": number, "status": "open", "stage": "assessment"}.items() <= next(
            row for row in json.loads(listed.stdout) if row["number"] == number
        ).items()

        with pytest.raises(CaseError, match="may not restore"):  # a case manager may not
            await ops.restore(number, ALICE, "bring it back")
        restored = await ops.restore(number, SAM, "terminated by mistake")
        assert restored.status == "running" and restored.case.stage is Stage.ASSESSMENT
        assert restored.next_deadline == before.next_deadline  # the assessment is due when it was
        assert restored.seq == before.seq + 1
        after = await ops.do(number, c.AddNote(actor=ALICE, text="back again"))
        assert after.seq == before.seq + 2
        # a command applied before the loss, retried with its key: answered as done, not applied
        # again (the record kept its key); another command with that key is refused
        retried = await ops.act(number, c.AddNote(actor=ALICE, text="before the loss"), key=noted.key)
        assert retried.repeated and retried.seq == noted.seq and retried.action == "add_note"
        with pytest.raises(CaseError, match="this idempotency key was used for another command"):
            await ops.act(number, c.AddNote(actor=ALICE, text="something else"), key=noted.key)
        assert await notes_with(record_store, number, "before the loss") == 1
        events = await ops.history(number)
        assert [e.seq for e in events] == list(range(1, after.seq + 1))
        restore = events[-2].change
        assert restore.action == "restore" and restore.actor == SAM and restore.lost_status == "terminated"


async def test_an_archived_case_is_not_restored(
    dev_env: WorkflowEnvironment, sqlite_store: AsyncEngine
) -> None:
    async with case_worker(dev_env, sqlite_store) as ops:
        number = (await ops.open_case(opening("fast"))).case.number
        await ops.act(number, c.Decline(actor=ALICE, reason="not eligible"))
        handle = ops.client.get_workflow_handle(workflow_id(number))
        await asyncio.wait_for(handle.result(), timeout=60)  # the 20 s reopen window passes
        archived = await ops.view(number)
        assert archived.status == "archived"
        assert (
            archived.allowed_actions == [] and archived.next_action is None and archived.next_deadline is None
        )
        with pytest.raises(CaseError, match="archived: its reopen window has passed"):
            await ops.restore(number, SAM, "bring it back")


async def test_thousands_of_long_notes_keep_the_case_alive_and_all_of_them_page_back(
    dev_env: WorkflowEnvironment, sqlite_store: AsyncEngine
) -> None:
    record_store = sqlite_store
    count, text = 1_100, "x" * 3_990  # 4.4 MB of notes: past the 4 MB at which a case continues as new
    async with case_worker(dev_env, record_store) as ops:
        number = (await ops.open_case(opening("general"))).case.number
        for change in TO_MONITORING:
            await ops.act(number, change)
        handle = dev_env.client.get_workflow_handle(workflow_id(number))
        first_run = (await handle.describe()).run_id
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(count):
            queue.put_nowait(i)

        async def writer() -> None:  # a few people writing at once, faster than anyone types
            while not queue.empty():
                i = queue.get_nowait()
                while True:
                    try:
                        await ops.act(number, c.AddNote(actor=ALICE, text=f"{i:05d} {text}"))
                        break
                    except CaseError as busy:  # the record is behind: the case asks to wait
                        assert busy.kind == Refusal.UNAVAILABLE and "try again shortly" in busy.message
                        await asyncio.sleep(0.2)

        await asyncio.gather(*(writer() for _ in range(6)))
        view = await recorded(ops, number)
        described = await handle.describe()
        assert described.status is not None and described.status.name == "RUNNING"
        assert described.run_id != first_run  # it continued as new, on its own bounds
        assert described.raw_description.workflow_execution_info.history_size_bytes < 10 * 1024 * 1024
        assert len(view.model_dump_json()) < 16 * 1024

        # every note pages back from the record, newest first; every event oldest first
        seen: list[str] = []
        page = await ops.notes(number, limit=200)
        seen += [n.text[:5] for _, n in page.found]
        while page.next_before is not None:
            page = await ops.notes(number, before=page.next_before, limit=200)
            seen += [n.text[:5] for _, n in page.found]
        assert sorted(seen) == [f"{i:05d}" for i in range(count)]
        events = await ops.history(number)
        assert [e.seq for e in events] == list(range(1, view.seq + 1))
