"""The HTTP API against the dev server: keys, scoping, every error class, idempotent open."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import staff_of
from service.facade import CaseOps
from store.tables import record_access
from tests.conftest import case_worker
from tests.integration.test_callback import DIRECTORY, serving
from tests.processes import free_port
from tests.scenario import PROGRAMS
from tests.terminal import KEYS

pytestmark = pytest.mark.asyncio(loop_scope="session")
CLIENT = {"given_name": "Leila", "family_name": "Nasser", "phone": "555-0142"}


class Api:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def call(self, who: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer key-{who}"} if who else {}
        return await self.http.request(method, path, headers=headers, **kw)

    async def act(self, who: str, number: str, action: str, **body: Any) -> httpx.Response:
        return await self.call(who, "POST", f"/cases/{number}/{action}", json=body)


@asynccontextmanager
async def served(dev_env: WorkflowEnvironment, store: AsyncEngine) -> AsyncIterator[Api]:
    async with case_worker(dev_env, store, DIRECTORY) as ops:
        ops.directory, ops.staff = DIRECTORY, staff_of(KEYS)  # as connected_app wires them
        app = create_app(ops, DIRECTORY, KEYS, store)
        async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield Api(http)


@pytest_asyncio.fixture(loop_scope="session")
async def api(dev_env: WorkflowEnvironment, record_store: AsyncEngine) -> AsyncIterator[Api]:
    async with served(dev_env, record_store) as api:
        yield api


@pytest_asyncio.fixture(loop_scope="session")
async def api_on_sqlite(dev_env: WorkflowEnvironment, sqlite_store: AsyncEngine) -> AsyncIterator[Api]:
    """For the long fuzzing run: it tests the API's answers, not the record store."""
    async with served(dev_env, sqlite_store) as api:
        yield api


def problem_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"]
    return str(body["detail"])


async def test_a_case_through_the_api(api: Api, record_store: AsyncEngine) -> None:
    intake = f"FORM-{uuid.uuid4().hex[:8]}"
    opened = await api.call(
        "alice",
        "POST",
        "/cases",
        json={"program": "general", "client": CLIENT, "supervisor": "sam", "intake_reference": intake},
    )
    assert opened.status_code == 201, opened.text
    number = opened.json()["case"]["number"]
    assert opened.headers["location"] == f"/cases/{number}"
    again = await api.call(
        "alice",
        "POST",
        "/cases",
        json={"program": "general", "client": CLIENT, "supervisor": "sam", "intake_reference": intake},
    )
    assert again.status_code == 200 and again.json()["case"]["number"] == number  # no second case
    # the same reference is not a way into someone else's case, nor a way to open another one
    form = {"program": "general", "client": CLIENT, "supervisor": "sam", "intake_reference": intake}
    by_bob = await api.call("bob", "POST", "/cases", json=form)
    assert "already used by another case" in problem_of(by_bob, 409) and "Nasser" not in by_bob.text
    other_client = form | {"client": CLIENT | {"family_name": "Haddad"}}
    assert "for another client" in problem_of(
        await api.call("alice", "POST", "/cases", json=other_client), 409
    )
    other_program = form | {"program": "housing"}
    refused = problem_of(await api.call("alice", "POST", "/cases", json=other_program), 409)
    assert "in program general, not housing" in refused

    assert (await api.act("alice", number, "accept", note="by API")).json()["stage"] == "assessment"
    assessed = await api.act(
        "alice",
        number,
        "complete-assessment",
        assessment={"needs": [{"domain": "housing", "severity": 3}], "risk": "high"},
    )
    assert assessed.status_code == 200, assessed.text
    await api.act(
        "alice",
        number,
        "submit-plan",
        goals=[{"id": "g1", "description": "Home", "objective": "lease", "target_date": "2027-05-01"}],
    )
    assert "high-risk plan needs a supervisor" in problem_of(
        await api.act("alice", number, "approve-plan"), 403
    )
    assert (await api.act("sam", number, "approve-plan")).json()["stage"] == "coordination"

    shown = await api.call("alice", "GET", f"/cases/{number}")
    assert shown.status_code == 200 and shown.json()["case"]["client"]["family_name"] == "Nasser"
    # the events come from the record, which the workflow's recording brings up to date a moment
    # after each command (on a loaded machine, seconds)
    async with asyncio.timeout(30):
        while len((page := (await api.call("sam", "GET", f"/cases/{number}/events")).json())["items"]) < 5:
            await asyncio.sleep(0.05)
    assert [e["change"]["action"] for e in page["items"]][:3] == ["open", "accept", "complete_assessment"]
    assert all(e["change"]["actor"]["id"] in {"alice", "sam", "casework"} for e in page["items"])
    assert page["next_after"] is None  # one page holds them all
    async with record_store.connect() as conn:
        reads = (
            await conn.execute(
                select(record_access.c.actor_id, record_access.c.what)
                .where(record_access.c.case_number == number)
                .order_by(record_access.c.id)
            )
        ).all()
    # the retried open showed alice her case (a read); then her GET; then sam's events, a read
    # each time he asked for them
    assert [tuple(r) for r in reads][:2] == [("alice", "view"), ("alice", "view")]
    assert [tuple(r) for r in reads[2:]] == [("sam", "events")] * len(reads[2:]) and reads[2:]


async def test_an_open_retried_with_its_key_opens_one_case(api: Api) -> None:
    key = f"open-{uuid.uuid4().hex[:12]}"
    form = {"program": "general", "client": CLIENT, "supervisor": "sam"}

    async def open_as(who: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer key-{who}", "Idempotency-Key": key}
        return await api.http.post("/cases", json=body, headers=headers)

    first, again = await open_as("alice", form), await open_as("alice", form)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    number = first.json()["case"]["number"]
    assert number.startswith("K-") and again.json()["case"]["number"] == number
    assert again.headers["Idempotency-Key"] == key
    other_client = form | {"client": CLIENT | {"family_name": "Haddad"}}
    assert "this idempotency key already opened case" in problem_of(await open_as("alice", other_client), 409)
    # keys are per caller: bob's same key opens his own case
    by_bob = await open_as("bob", form | {"supervisor": "sam"})
    assert by_bob.status_code == 201 and by_bob.json()["case"]["number"] != number


async def test_a_case_is_managed_and_overseen_by_people_casework_knows(api: Api) -> None:
    """A typo or a wrong role would leave a case in nobody's caseload, or with nobody to approve it."""
    form = {"program": "general", "client": CLIENT}
    unknown = await api.call("sam", "POST", "/cases", json=form | {"manager": "alcie", "supervisor": "sam"})
    assert "manager: alcie is not one of casework's staff" in problem_of(unknown, 422)
    no_overseer = await api.call("alice", "POST", "/cases", json=form | {"supervisor": "bob"})
    assert "supervisor: bob is a case manager: a case's supervisor is a program lead or supervisor" in (
        problem_of(no_overseer, 422)
    )
    # a lead of another program, or a supervisor managing a case someone else supervises: nobody
    # who should could see the case
    other_lead = await api.call(
        "sam", "POST", "/cases", json=form | {"program": "housing", "supervisor": "lead-general"}
    )
    assert "lead-general does not lead program housing" in problem_of(other_lead, 422)
    assert "sam is a supervisor: one who manages a case supervises it too" in problem_of(
        await api.call("sam", "POST", "/cases", json=form), 422
    )
    own = await api.call("sam", "POST", "/cases", json=form | {"supervisor": "sam"})
    assert own.status_code == 201, own.text
    opened = await api.call("alice", "POST", "/cases", json=form | {"supervisor": "sam"})
    number = opened.json()["case"]["number"]
    to_supervisor = await api.act("sam", number, "transfer", to_manager="sam", reason="caseload balance")
    assert "a case's new manager is a case manager" in problem_of(to_supervisor, 422)
    to_nobody = await api.act("sam", number, "transfer", to_manager="nobody2", reason="caseload balance")
    assert "to_manager: nobody2 is not one of casework's staff" in problem_of(to_nobody, 422)
    to_provider = await api.act(
        "sam", number, "transfer", to_manager="shelter-north", reason="caseload balance"
    )
    assert "shelter-north is a provider" in problem_of(to_provider, 422)
    moved = await api.act("sam", number, "transfer", to_manager="bob", reason="caseload balance")
    assert moved.status_code == 200, moved.text


async def test_every_error_has_its_status_and_the_domains_words(api: Api) -> None:
    problem_of(await api.call(None, "GET", "/cases/X"), 401)
    problem_of(await api.call("mallory", "GET", "/cases/X"), 401)
    number = (await api.call("alice", "POST", "/cases", json={"client": CLIENT})).json()["case"]["number"]
    assert problem_of(await api.act("alice", number, "approve-plan"), 409) == (
        "cannot approve_plan a case in intake (only from: planning)"
    )
    assert "reason" in problem_of(await api.act("alice", number, "decline", reason="no"), 422)
    assert "actor" in problem_of(
        await api.act("alice", number, "accept", actor={"id": "sam", "role": "supervisor"}), 422
    )
    # an empty note and a note of only spaces are the same mistake, told alike
    empty, spaces = [await api.act("alice", number, "add-note", text=text) for text in ("", "   ")]
    assert "text" in problem_of(empty, 422) and "only spaces" in problem_of(spaces, 422)
    assert empty.json()["title"] == spaces.json()["title"] == "Invalid request"
    problem_of(await api.act("alice", "NO-SUCH-CASE", "accept"), 404)
    problem_of(await api.call("alice", "POST", "/cases", json={"client": {"family_name": "X"}}), 422)
    problem_of(await api.call("alice", "POST", "/cases", json={"client": CLIENT, "manager": "bob"}), 403)
    problem_of(await api.call("provider", "POST", "/cases", json={"client": CLIENT}), 403)
    assert "unknown program" in problem_of(
        await api.call("alice", "POST", "/cases", json={"client": CLIENT, "program": "nope"}), 422
    )
    problem_of(await api.call("alice", "GET", "/cases", params={"page_token": "!!"}), 400)
    problem_of(await api.call("alice", "GET", "/cases", params={"page_token": "bm90IGEgdG9rZW4="}), 400)
    problem_of(await api.call("alice", "GET", "/cases", params={"page_size": 0}), 422)


async def test_a_case_manager_cannot_see_or_touch_another_caseload(api: Api) -> None:
    number = (await api.call("alice", "POST", "/cases", json={"client": CLIENT, "supervisor": "sam"})).json()[
        "case"
    ]["number"]
    # bob gets 404, not 403: whether the case exists is not his to know
    problem_of(await api.call("bob", "GET", f"/cases/{number}"), 404)
    problem_of(await api.call("bob", "GET", f"/cases/{number}/events"), 404)
    problem_of(await api.act("bob", number, "accept"), 404)
    assert (await api.call("sam", "GET", f"/cases/{number}")).status_code == 200  # sam's team
    assert (
        await api.call("lead", "GET", f"/cases/{number}")
    ).status_code == 200  # the general program's lead
    problem_of(await api.call("provider", "GET", f"/cases/{number}"), 404)


async def test_lists_are_scoped_filtered_and_paged(api: Api) -> None:
    supervisor = "sam"
    numbers = []
    for _ in range(3):
        r = await api.call("alice", "POST", "/cases", json={"client": CLIENT, "supervisor": supervisor})
        numbers.append(r.json()["case"]["number"])
    await api.act("alice", numbers[0], "accept")

    async def listed(who: str, **params: Any) -> list[str]:
        seen, token = [], None
        while True:
            r = await api.call(
                who, "GET", "/cases", params={**params, **({"page_token": token} if token else {})}
            )
            assert r.status_code == 200, r.text
            seen += [item["number"] for item in r.json()["items"]]
            token = r.json()["next_page_token"]
            if not token:
                return seen

    for _ in range(50):  # the record follows each case, and the accept's new stage, a moment later
        in_assessment = await listed("alice", stage="assessment")
        if set(numbers) <= set(await listed("alice")) and numbers[0] in in_assessment:
            break
        await asyncio.sleep(0.2)
    assert numbers[0] in in_assessment and numbers[1] not in in_assessment
    # Paged two at a time, now that nothing moves: every case once. (A case that moves while
    # the pages are read may show twice, docs/architecture.md "The case list".)
    ours = [n for n in await listed("alice", page_size=2) if n in numbers]  # other tests' cases may move
    assert sorted(ours) == sorted(numbers)
    assert not set(numbers) & set(await listed("bob"))
    assert set(numbers) <= set(await listed("sam"))
    assert set(numbers) <= set(await listed("lead", program="general"))
    problem_of(await api.call("provider", "GET", "/cases"), 403)


async def test_reports_are_for_supervisors_and_cover_their_team(api: Api) -> None:
    number = (await api.call("alice", "POST", "/cases", json={"client": CLIENT, "supervisor": "sam"})).json()[
        "case"
    ]["number"]
    await api.act("alice", number, "accept")
    problem_of(await api.call("alice", "GET", "/reports/caseload"), 403)
    # the report counts the record, which has the accept once the workflow has recorded it
    async with asyncio.timeout(30):
        while True:
            load = await api.call("sam", "GET", "/reports/caseload")
            assert load.status_code == 200, load.text
            if ["alice", "assessment"] in [row[:2] for row in load.json()["rows"]]:
                break
            await asyncio.sleep(0.05)
    assert load.json()["columns"] == ["manager", "stage", "cases"]
    assert datetime.fromisoformat(load.json()["as_of"]) > datetime.now(UTC) - timedelta(minutes=1)
    # the history reports are kept a while: asked twice, the same figures of the same moment
    kept = [(await api.call("sam", "GET", "/reports/stages")).json() for _ in range(2)]
    assert kept[0] == kept[1] and kept[0]["as_of"]
    csv = await api.call("sam", "GET", "/reports/weekly", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("week,opened,closed")
    problem_of(await api.call("sam", "GET", "/reports/nonsense"), 422)


async def test_no_input_makes_the_api_fail_with_a_server_error(api_on_sqlite: Api, tmp_path: Path) -> None:
    """schemathesis generates requests from the OpenAPI schema for every operation."""
    api = api_on_sqlite
    base = str(api.http.base_url).rstrip("/")
    st = str(Path(sys.executable).parent / "st")
    done = await asyncio.to_thread(
        subprocess.run,
        [
            st,
            "run",
            f"{base}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "8",
            "--generation-deterministic",
            "--request-timeout",
            "30",
            "-H",
            "Authorization: Bearer key-fuzzer",  # sees only the cases it opens
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "passed" in done.stdout.lower() or "no issues" in done.stdout.lower(), done.stdout[-2000:]


async def test_a_request_temporal_gives_up_on_is_a_503_not_a_500() -> None:
    """Seen under load: the server cancelled a describe; the API answered 500 with no word."""
    client = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)

    async def gives_up(*args: Any, **kwargs: Any) -> Any:
        raise RPCError("operation was canceled", RPCStatusCode.CANCELLED, b"")

    client.workflow_service.describe_workflow_execution = gives_up  # type: ignore[method-assign]
    app = create_app(CaseOps(client, PROGRAMS, "nowhere"), DIRECTORY, KEYS, None)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        shown = await http.get("/cases/X-1", headers={"Authorization": "Bearer key-sam"})
        # a number that cannot be a case never reaches Temporal (the fuzz test's did: a 5xx)
        stray = await http.get(
            "/cases/%C3%AF%C3%9A%F0%A6%80%90Z", headers={"Authorization": "Bearer key-sam"}
        )
    assert "Temporal did not answer for case X-1 (operation was canceled)" in problem_of(shown, 503)
    assert "number" in problem_of(stray, 422)


async def test_a_describe_temporal_gives_up_on_once_is_asked_again() -> None:
    """Seen in the full suite: one describe came back CANCELLED and the next answered. The
    caller gets the answer, not a 503."""
    client = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    answers = [RPCError("operation was canceled", RPCStatusCode.CANCELLED, b"")]
    answers.append(RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b""))

    async def gives_up_once(*args: Any, **kwargs: Any) -> Any:
        raise answers.pop(0)

    client.workflow_service.describe_workflow_execution = gives_up_once  # type: ignore[method-assign]
    app = create_app(CaseOps(client, PROGRAMS, "nowhere"), DIRECTORY, KEYS, None)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        shown = await http.get("/cases/X-2", headers={"Authorization": "Bearer key-sam"})
    assert "no case X-2" in problem_of(shown, 404)
    assert answers == []  # asked twice


async def test_the_api_says_503_when_temporal_is_down_and_documents_itself_offline() -> None:
    down = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    ops = CaseOps(down, PROGRAMS, "nowhere")
    app = create_app(ops, DIRECTORY, KEYS, None)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        shown = await http.get("/cases/X-1", headers={"Authorization": "Bearer key-sam"})
        assert "Temporal cannot be reached" in problem_of(shown, 503)
        assert shown.headers["content-type"] == "application/problem+json"
        listed = await http.get("/cases", headers={"Authorization": "Bearer key-sam"})
        assert "no record store" in problem_of(listed, 503)  # lists read the record, not Temporal

        schema = (await http.get("/openapi.json")).json()
        assert schema["components"]["securitySchemes"]["apiKey"] == {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key: Bearer <key>",
        }
        assert {"apiKey": []} in schema["paths"]["/cases"]["get"]["security"]
        page = (await http.get("/docs")).text
        assert "cdn" not in page.lower() and "/docs/assets/swagger-ui-bundle.js" in page
        assert (await http.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200
