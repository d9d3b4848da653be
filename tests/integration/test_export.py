"""A client asks for everything casework holds about them (a subject access request): a supervisor
exports it through the API or `casework export-client`, from the SQL record, and the export is
logged. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import digest
from domain import commands as c
from domain.models import Actor, Role, SharedField
from service.export import SubjectAccess, json_chunks
from store.tables import outbox, record_access
from tests.conftest import TrackingOps, case_worker, recorded
from tests.integration.test_callback import DIRECTORY, serving
from tests.integration.test_devserver import eventually
from tests.processes import casework, environment
from tests.scenario import ALICE, SAM, client, opening
from tests.terminal import KEYS

pytestmark = pytest.mark.asyncio(loop_scope="session")

# tess supervises another team: she may not know this case exists
PEOPLE_KEYS = KEYS | {digest("key-tess"): Actor(id="tess", role=Role.SUPERVISOR)}
NAME_AND_CONTACT = frozenset({SharedField.NAME, SharedField.CONTACT})


async def a_case_with_everything(
    ops: TrackingOps, store: AsyncEngine, family_name: str = "Okafor"
) -> tuple[str, str]:
    """Alice's case for Maria (sam supervises): a note, consent to share name and contact, a
    referral sharing them, a home visit Maria is invited to; every message delivered."""
    email = f"maria.{uuid.uuid4().hex[:8]}@client.example.org"
    maria = client().model_copy(
        update={"email": email, "address": "12 Harbour Row", "family_name": family_name}
    )
    number = (await ops.open_case(opening().model_copy(update={"client": maria}))).case.number
    await ops.act(number, c.Accept(actor=ALICE, note="met at the drop-in"))
    await ops.act(number, c.RecordConsent(actor=ALICE, share=NAME_AND_CONTACT, note="signed release"))
    await ops.act(
        number,
        c.Refer(
            actor=ALICE,
            provider="shelter-north",
            service="housing",
            reason="needs a bed",
            share=NAME_AND_CONTACT,
        ),
    )
    visit = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    await ops.act(number, c.ScheduleFollowUp(actor=ALICE, kind="home_visit", at=visit, invite_client=True))
    await ops.act(number, c.AddNote(actor=ALICE, text="prefers calls after 5pm"))
    await recorded(ops, number)

    async def all_delivered() -> bool:
        async with store.connect() as conn:
            statuses = (
                await conn.execute(select(outbox.c.status).where(outbox.c.case_number == number))
            ).scalars()
            return set(statuses) == {"delivered"}

    await eventually(all_delivered, within=30)
    return number, email


@pytest_asyncio.fixture(loop_scope="session")
async def api(
    dev_env: WorkflowEnvironment, record_store: AsyncEngine
) -> AsyncIterator[tuple[TrackingOps, str]]:
    async with case_worker(dev_env, record_store, DIRECTORY) as ops:
        ops.directory = DIRECTORY
        async with serving(create_app(ops, DIRECTORY, PEOPLE_KEYS, record_store)) as base:
            yield ops, base


async def reads_of(store: AsyncEngine, number: str) -> list[tuple[str, str]]:
    async with store.connect() as conn:
        rows = await conn.execute(
            select(record_access.c.actor_id, record_access.c.what)
            .where(record_access.c.case_number == number)
            .order_by(record_access.c.id)
        )
        return [(r.actor_id, r.what) for r in rows]


async def test_a_supervisor_exports_everything_held_about_the_client(
    api: tuple[TrackingOps, str], record_store: AsyncEngine
) -> None:
    ops, base = api
    number, email = await a_case_with_everything(ops, record_store)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:

        async def get(who: str, path: str, **params: Any) -> httpx.Response:
            return await http.get(path, params=params, headers={"Authorization": f"Bearer key-{who}"})

        assert (await get("lead", f"/cases/{number}")).status_code == 200  # the lead reads the case
        exported = await get("sam", f"/cases/{number}/export")
        assert exported.status_code == 200, exported.text
        assert exported.headers["cache-control"] == "no-store"
        assert f'filename="{number}-export.json"' in exported.headers["content-disposition"]
        data = exported.json()
        page = await get("sam", f"/cases/{number}/export", format="html")
        refused_manager = await get("alice", f"/cases/{number}/export")
        refused_other_team = await get("tess", f"/cases/{number}/export")

    assert data["client"]["family_name"] == "Okafor" and data["client"]["email"] == email
    assert data["case"]["manager"] == "alice" and data["consent"]["share"] == ["contact", "name"]
    actions = [e["action"] for e in data["events"]]
    assert actions[:6] == ["open", "accept", "record_consent", "refer", "schedule_follow_up", "add_note"]
    assert data["events"][1]["by"] == "alice (case_manager)"
    notes = [n["text"] for n in data["notes"]]
    assert "accept: met at the drop-in" in notes and "prefers calls after 5pm" in notes
    [consent] = data["consent_history"]
    assert (consent["by"], consent["share"], consent["note"]) == (
        "alice (case_manager)",
        ["contact", "name"],
        "signed release",
    )

    [referral] = data["referrals"]
    # exactly what the provider received: name and contact, not the birth date or the address
    assert referral["shared_with_provider"] == {"name": "Maria Okafor", "phone": "555-0101", "email": email}
    assert referral["provider"] == "shelter-north" and referral["reason"] == "needs a bed"
    assert referral["request"]["status"] == "delivered"
    [visit] = data["follow_ups"]
    assert {(i["to"], i["status"]) for i in visit["invitations"]} == {
        ("alice", "delivered"),
        (email, "delivered"),  # the client's own address: it is her data
    }
    messages = {m["kind"]: m for m in data["messages"]}
    assert messages["referral_request"]["attempts"][0]["outcome"] == "delivered"
    # the provider's answer link would answer for the provider: whoever holds the export must not
    assert "/answer/(link withheld from this export)" in messages["referral_request"]["body"]
    assert [(a["by"], a["what"]) for a in data["access_log"]] == [
        ("lead-general (program_lead)", "view"),
        ("sam (supervisor)", "export"),  # the export lists itself
    ]

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text and "Data held about Maria Okafor" in page.text
    assert "schedule_follow_up" in page.text and "prefers calls after 5pm" in page.text

    assert refused_manager.status_code == 403  # alice may see her case, but not export it
    assert refused_other_team.status_code == 404  # not tess's team: the case does not exist for her
    assert await reads_of(record_store, number) == [
        ("lead-general", "view"),
        ("sam", "export"),
        ("sam", "export"),
    ]

    # two rows a read give the same export: pages bound what is held at once, nothing else
    export = await SubjectAccess(record_store, ops.data_keys_for_record(), page=2).export(
        number, SAM, datetime.now(UTC)
    )
    assert export is not None
    paged = json.loads("".join([chunk async for chunk in json_chunks(export)]))
    for section in ("events", "notes", "consent_history", "referrals", "follow_ups", "messages"):
        assert paged[section] == data[section], section


async def test_casework_export_client_writes_both_files_through_the_api(
    api: tuple[TrackingOps, str], record_store: AsyncEngine, tmp_path: Path
) -> None:
    ops, base = api
    number = (await ops.open_case(opening())).case.number
    await ops.act(number, c.AddNote(actor=ALICE, text="first visit went well"))
    await recorded(ops, number)

    as_sam = environment(api_url=base, api_key="key-sam")
    done = await asyncio.to_thread(
        casework, "export-client", number, "--out", str(tmp_path / "sar"), env=as_sam
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "sar" / f"{number}-export.json").read_text(encoding="utf-8"))
    assert data["case_number"] == number
    assert "first visit went well" in [n["text"] for n in data["notes"]]
    page = (tmp_path / "sar" / f"{number}-export.html").read_text(encoding="utf-8")
    assert "Data held about Maria Okafor" in page and "first visit went well" in page

    as_alice = environment(api_url=base, api_key="key-alice")
    refused = await asyncio.to_thread(
        casework, "export-client", number, "--out", str(tmp_path / "no"), env=as_alice
    )
    assert refused.returncode == 4 and "forbidden" in refused.stderr
    assert list((tmp_path / "no").iterdir()) == []  # nothing half-written
    assert await reads_of(record_store, number) == [("sam", "export"), ("sam", "export")]
