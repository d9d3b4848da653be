"""Providers work their referrals through FHIR R4: a Task and a ServiceRequest per referral."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import digest
from domain import commands as c
from domain.directory import Directory, EmailChannel, Provider
from domain.models import Actor, ReferralStatus, Role, ServiceType, SharedField
from tests.conftest import case_worker, recorded
from tests.integration.test_callback import serving
from tests.scenario import ALICE, opening

pytestmark = pytest.mark.asyncio(loop_scope="session")
# Providers of this test's own: the record store is shared by the session's tests, and a search
# finds every referral of its provider.
DIRECTORY = Directory(
    providers={
        pid: Provider(
            id=pid,
            name=pid.replace("-", " ").title(),
            services=frozenset({ServiceType.HOUSING}),
            channel=EmailChannel(address=f"{pid}@providers.example.org"),
        )
        for pid in ("fhir-shelter", "fhir-pantry")
    }
)
KEYS = {
    digest("key-shelter"): Actor(id="fhir-shelter", role=Role.PROVIDER),
    digest("key-pantry"): Actor(id="fhir-pantry", role=Role.PROVIDER),
    digest("key-alice"): ALICE,
}
SHELTER = {"Authorization": "Bearer key-shelter"}
PANTRY = {"Authorization": "Bearer key-pantry"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def fhir_json(response: httpx.Response, status: int = 200) -> bytes:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    return response.content


def outcome_of(response: httpx.Response, status: int) -> str:
    found = OperationOutcome.model_validate_json(fhir_json(response, status))
    return str(found.issue[0].diagnostics)


async def test_a_provider_works_its_referral_as_a_fhir_task(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with case_worker(time_env, record_store, DIRECTORY) as ops:
        # The client agreed to share their name only; the referral shares it.
        number = (await ops.open_case(opening("general"))).case.number
        await ops.act(number, c.Accept(actor=ALICE))
        await ops.act(number, c.RecordConsent(actor=ALICE, share=frozenset({SharedField.NAME})))
        before = datetime.now(UTC)
        refer = c.Refer(
            actor=ALICE,
            provider="fhir-shelter",
            service=ServiceType.HOUSING,
            reason="needs a bed tonight",
            share=frozenset({SharedField.NAME}),
        )
        referral = f"R{(await ops.act(number, refer)).seq}"
        await recorded(ops, number)
        tid = f"{number}.{referral}"

        async with (
            serving(create_app(ops, DIRECTORY, KEYS, record_store)) as base,
            httpx.AsyncClient(base_url=f"{base}/fhir") as http,
        ):
            # The shelter polls for what changed and finds its Task.
            since = before.isoformat().replace("+00:00", "Z")
            polled = await http.get(
                "/Task",
                params={"owner": "Organization/fhir-shelter", "_lastUpdated": f"gt{since}"},
                headers=SHELTER,
            )
            bundle = Bundle.model_validate_json(fhir_json(polled))
            assert bundle.type == "searchset" and [
                e.resource.id for e in bundle.entry or [] if e.resource
            ] == [tid]
            later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
            nothing_new = await http.get("/Task", params={"_lastUpdated": f"gt{later}"}, headers=SHELTER)
            assert Bundle.model_validate_json(fhir_json(nothing_new)).total == 0

            task = Task.model_validate_json(fhir_json(await http.get(f"/Task/{tid}", headers=SHELTER)))
            assert (task.status, task.intent) == ("requested", "order")
            assert task.owner is not None and task.owner.reference == "Organization/fhir-shelter"
            assert task.focus is not None and task.focus.reference == f"ServiceRequest/{tid}"

            # The ServiceRequest carries the client's name, and nothing else of theirs.
            raw = fhir_json(await http.get(f"/ServiceRequest/{tid}", headers=SHELTER))
            request = ServiceRequest.model_validate_json(raw)
            assert (
                request.code is not None and request.code.coding and request.code.coding[0].code == "housing"
            )
            assert request.subject.reference == "#client"
            assert request.contained is not None
            client = Patient.model_validate(request.contained[0].model_dump())
            assert client.name is not None and client.name[0].text == "Maria Okafor"
            assert client.telecom is None and client.birthDate is None and client.address is None
            assert b"555-0101" not in raw and b"1988" not in raw

            # Another provider does not learn the referral exists.
            assert "no Task" in outcome_of(await http.get(f"/Task/{tid}", headers=PANTRY), 404)
            assert outcome_of(await http.get(f"/ServiceRequest/{tid}", headers=PANTRY), 404)
            theirs = await http.get("/Task", params={"owner": "Organization/fhir-shelter"}, headers=PANTRY)
            assert Bundle.model_validate_json(fhir_json(theirs)).total == 0
            assert outcome_of(
                await http.get(f"/Task/{tid}", headers={"Authorization": "Bearer key-alice"}), 403
            )
            assert outcome_of(await http.get(f"/Task/{tid}"), 401)

            # An invalid Task, and a rejection with no reason, are refused; nothing changes.
            invalid = await http.put(
                f"/Task/{tid}", json={"resourceType": "Task", "intent": "order"}, headers=SHELTER
            )
            assert "status" in outcome_of(invalid, 422)
            typo = [{"op": "replace", "path": "/status", "value": "acepted"}]
            assert "not a FHIR Task status" in outcome_of(
                await http.patch(f"/Task/{tid}", json=typo, headers=SHELTER | JSON_PATCH), 422
            )
            no_reason = await http.patch(f"/Task/{tid}", json={"status": "rejected"}, headers=SHELTER)
            assert "statusReason" in outcome_of(no_reason, 422)
            assert (await ops.view(number)).case.referrals[-1].status in (
                ReferralStatus.PENDING,
                ReferralStatus.SENT,
            )

            # Accepted by JSON Patch: the case's referral is accepted, once however often it is sent.
            accept = [{"op": "replace", "path": "/status", "value": "accepted"}]
            for _ in range(2):
                done = await http.patch(f"/Task/{tid}", json=accept, headers=SHELTER | JSON_PATCH)
                assert Task.model_validate_json(fhir_json(done)).status == "accepted"
            assert (await ops.view(number)).case.referrals[-1].status is ReferralStatus.ACCEPTED

            # Completed by PUT of the whole Task.
            task = Task.model_validate_json(fhir_json(await http.get(f"/Task/{tid}", headers=SHELTER)))
            finished = task.model_copy(update={"status": "completed"}).model_dump_json()
            for _ in range(2):
                put = await http.put(
                    f"/Task/{tid}",
                    content=finished,
                    headers=SHELTER | {"Content-Type": "application/fhir+json"},
                )
                assert Task.model_validate_json(fhir_json(put)).status == "completed"

        referral_now = (await ops.view(number)).case.referrals[-1]
        assert referral_now.status is ReferralStatus.COMPLETED
        assert referral_now.answered_by == Actor(id="fhir-shelter", role=Role.PROVIDER)
        answers = [e for e in await ops.history(number) if e.action == "answer_referral"]
        assert len(answers) == 2  # accepted, completed: each once
