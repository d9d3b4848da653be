"""The FHIR R4 door for providers: their referrals as Task + ServiceRequest (api/fhir_resources.py).

    GET   /fhir/Task?owner=Organization/<id>&_lastUpdated=gt<instant>   a searchset of its own Tasks
    GET   /fhir/Task/<id>, GET /fhir/ServiceRequest/<id>
    PATCH /fhir/Task/<id>   JSON Patch (application/json-patch+json) on status/statusReason, or a
                            simple form {"status": ..., "statusReason": {"text": ...}}
    PUT   /fhir/Task/<id>   the whole Task; only its status and statusReason are taken

A provider proves who it is with an API key whose actor is the provider (role `provider` in the
keys file, id as in the directory): FHIR clients poll with GETs, which carry no body for the
callback's HMAC to sign, and bearer tokens are what FHIR clients send. A provider sees its own
referrals only; anyone else's are 404. An answer is the callback's command (`AnswerReferral` as
the provider, through the case service), keyed by its content: sent twice, it applies once.
Errors are OperationOutcomes (application/fhir+json), their status from `HTTP_STATUS`.

What is read: the record's referral rows (who owns it, its status, when it changed), the
request as it was sent to the provider (the outbox's payload: the shared client data, no more),
and, for one Task, the case service's live referral (its newest status and reason).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fhir.resources.R4B.task import Task
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import digest
from api.fhir_resources import (
    ANSWER_OF,
    FHIR_JSON,
    TASK_STATUS,
    TASK_STATUSES,
    ReferralFacts,
    SentRequest,
    outcome,
    reason_of,
    referral_of,
    searchset,
    service_request,
    task,
)
from domain.commands import AnswerReferral
from domain.directory import Directory, Provider
from domain.errors import Refusal, explain
from domain.models import Actor, Referral, ReferralStatus, Role
from service.access_log import log_access
from service.facade import CaseOps
from service.refusals import HTTP_STATUS, CaseError
from store.keys import ClientErased
from store.tables import case_referrals, outbox

PAGE_MAX = 500
PATCHABLE = ("status", "statusReason")
SEARCH_PREFIXES = {"gt", "ge", "lt", "le"}


class FhirError(Exception):
    def __init__(self, kind: Refusal, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.kind, self.diagnostics = kind, diagnostics


def fhir(resource: Any, status: int = 200) -> Response:
    return Response(resource.model_dump_json(exclude_none=True), status_code=status, media_type=FHIR_JSON)


def invalid(exc: ValidationError, what: str) -> FhirError:
    return FhirError(Refusal.VALIDATION, f"not a valid {what}: {explain(exc.errors())}")


class FhirDoor:
    """The FHIR routes' reads and the answer, over the case service and the record."""

    def __init__(
        self, ops: CaseOps, directory: Directory, keys: dict[str, Actor], store: AsyncEngine
    ) -> None:
        self.ops, self.directory, self.keys, self.store = ops, directory, keys, store

    def provider_of(self, request: Request) -> Provider:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        actor = self.keys.get(digest(key.strip())) if scheme.lower() == "bearer" and key.strip() else None
        if actor is None:
            raise FhirError(
                Refusal.UNAUTHENTICATED, "send a provider's API key as 'Authorization: Bearer <key>'"
            )
        provider = self.directory.provider(actor.id) if actor.role is Role.PROVIDER else None
        if provider is None:
            raise FhirError(Refusal.FORBIDDEN, "the FHIR API is for providers listed in the directory")
        return provider

    def facts(self, row: Any, live: Referral | None = None) -> ReferralFacts:
        """A referral from its record row; the live referral, when known, is newer."""
        provider = self.directory.provider(row.provider)
        updated = row.updated_at or row.requested_at
        facts = ReferralFacts(
            case=row.case_number,
            referral=row.referral_id,
            provider=row.provider,
            provider_name=provider.name if provider else row.provider,
            service=row.service,
            status=ReferralStatus(row.status),
            requested_at=_utc(row.requested_at),
            updated_at=_utc(updated),
        )
        if live is None:
            return facts
        changed = live.status.value != row.status
        return ReferralFacts(
            **(facts.__dict__ | {"status": live.status, "reason": live.answer_reason})
            | ({"updated_at": _utc(live.answered_at or datetime.now(UTC))} if changed else {})
        )

    async def owned_row(self, provider: Provider, resource_id: str) -> Any:
        """The record's row of a referral of this provider's; 404 for any other."""
        found = referral_of(resource_id)
        row = None
        if found is not None:
            async with self.store.connect() as conn:
                row = (
                    await conn.execute(
                        select(case_referrals).where(
                            case_referrals.c.case_number == found[0],
                            case_referrals.c.referral_id == found[1],
                            case_referrals.c.provider == provider.id,
                        )
                    )
                ).one_or_none()
        if row is None:
            raise FhirError(Refusal.NOT_FOUND, f"no Task or ServiceRequest {resource_id} for {provider.id}")
        return row

    async def live(self, row: Any) -> Referral | None:
        """The referral as the case has it now (None once the case forgot it or cannot answer)."""
        try:
            case = (await self.ops.view(row.case_number)).case
        except CaseError:
            return None
        return next((r for r in case.referrals if r.id == row.referral_id), None)

    async def current(self, provider: Provider, resource_id: str) -> ReferralFacts:
        row = await self.owned_row(provider, resource_id)
        return self.facts(row, await self.live(row))

    async def sent(self, row: Any) -> SentRequest:
        key = f"{row.case_number}:referral:{row.referral_id}"
        async with self.store.connect() as conn:
            payload = (
                await conn.execute(select(outbox.c.payload).where(outbox.c.idempotency_key == key))
            ).scalar_one_or_none()
        try:  # sealed with the client's key; an erased client's request shares nothing any more
            payload = (await self.ops.data_keys_for_record().opener(row.case_number)).value(
                payload, "outbox.payload"
            )
        except ClientErased:
            payload = None
        payload = payload or {}
        return SentRequest(
            reason=payload.get("reason", ""),
            referred_by=payload.get("referred_by", ""),
            client=payload.get("client", {}),
        )

    async def search(self, provider: Provider, params: list[tuple[str, str]]) -> list[ReferralFacts]:
        owner = next((v for k, v in params if k == "owner"), f"Organization/{provider.id}")
        if owner.removeprefix("Organization/") != provider.id:
            return []  # a provider's search finds its own Tasks only
        query = select(case_referrals).where(case_referrals.c.provider == provider.id)
        for name, value in params:
            if name == "_lastUpdated":
                query = query.where(_updated(value))
        count = _count(dict(params).get("_count"))
        query = query.order_by(case_referrals.c.updated_at, case_referrals.c.case_number).limit(count)
        async with self.store.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [self.facts(row) for row in rows]

    async def log_read(self, provider: Provider, case: str, what: str) -> None:
        await log_access(self.store, Actor(id=provider.id, role=Role.PROVIDER), case, what)

    async def answer(self, provider: Provider, now: ReferralFacts, received: Task) -> ReferralFacts:
        """Apply the provider's new Task status to the referral (once), and the referral after it."""
        if received.id not in (None, now.id):
            raise FhirError(Refusal.BAD_REQUEST, f"the Task's id {received.id} is not {now.id}")
        owner = received.owner.reference if received.owner else None
        if owner not in (None, f"Organization/{provider.id}"):
            raise FhirError(Refusal.VALIDATION, "a Task's owner cannot be changed")
        status = str(received.status)
        if status not in TASK_STATUSES:
            raise FhirError(Refusal.VALIDATION, f"{status!r} is not a FHIR Task status")
        if status == TASK_STATUS[now.status]:
            return now  # nothing new: a retried answer, or the status it already has
        if status not in ANSWER_OF:
            allowed = ", ".join(ANSWER_OF)
            raise FhirError(
                Refusal.VALIDATION, f"a provider may set a Task's status to {allowed}, not {status}"
            )
        answer = ANSWER_OF[status]
        if answer is None or answer.status is now.status:
            if TASK_STATUS[now.status] == "requested" or answer is not None:
                return now  # acknowledged: casework keeps no state for it
            raise FhirError(
                Refusal.INVALID_TRANSITION, f"the Task is {TASK_STATUS[now.status]}, not requested"
            )
        reason = reason_of(received)
        try:
            command = AnswerReferral(
                actor=Actor(id=provider.id, role=Role.PROVIDER),
                referral_id=now.referral,
                answer=answer,
                reason=reason,
            )
        except ValidationError as exc:
            raise FhirError(
                Refusal.VALIDATION, f"a {status} Task needs a statusReason ({explain(exc.errors())})"
            ) from None
        key = f"fhir:{provider.id}:{now.id}:{answer.value}:{hashlib.sha256(reason.encode()).hexdigest()[:16]}"
        try:
            done = await self.ops.act(now.case, command, key=key)
        except CaseError as exc:
            if exc.kind is Refusal.FORBIDDEN:  # never tell a provider about referrals not theirs
                raise FhirError(Refusal.NOT_FOUND, f"no Task {now.id} for {provider.id}") from None
            raise FhirError(exc.kind, exc.message) from None
        if done.referral is None:
            return now
        return ReferralFacts(
            **now.__dict__
            | {
                "status": done.referral.status,
                "reason": done.referral.answer_reason,
                "updated_at": _utc(done.referral.answered_at or datetime.now(UTC)),
            }
        )


def add_fhir_routes(
    app: FastAPI, ops: CaseOps, directory: Directory, keys: dict[str, Actor], store: AsyncEngine | None
) -> None:
    @app.exception_handler(FhirError)
    async def on_fhir_error(request: Request, exc: FhirError) -> Response:
        return fhir(outcome(exc.kind, exc.diagnostics), HTTP_STATUS[exc.kind])

    def door() -> FhirDoor:
        if store is None:
            raise FhirError(Refusal.UNAVAILABLE, "this API has no record store configured")
        return FhirDoor(ops, directory, keys, store)

    @app.get("/fhir/Task", tags=["fhir"])
    async def search_tasks(request: Request) -> Response:
        """A searchset Bundle of the caller's Tasks (owner=Organization/<id>, _lastUpdated=gt<instant>)."""
        d = door()
        provider = d.provider_of(request)
        found = await d.search(provider, list(request.query_params.multi_items()))
        base = str(request.base_url).rstrip("/") + "/fhir"
        return fhir(searchset(base, str(request.url), [task(f) for f in found]))

    @app.get("/fhir/Task/{resource_id}", tags=["fhir"])
    async def read_task(resource_id: str, request: Request) -> Response:
        d = door()
        return fhir(task(await d.current(d.provider_of(request), resource_id)))

    @app.get("/fhir/ServiceRequest/{resource_id}", tags=["fhir"])
    async def read_service_request(resource_id: str, request: Request) -> Response:
        """The referral: the service asked for, why, and the client data the referral shared."""
        d = door()
        provider = d.provider_of(request)
        row = await d.owned_row(provider, resource_id)
        facts = d.facts(row, await d.live(row))
        await d.log_read(provider, row.case_number, "fhir_service_request")
        return fhir(service_request(facts, await d.sent(row)))

    @app.put("/fhir/Task/{resource_id}", tags=["fhir"])
    async def put_task(resource_id: str, request: Request) -> Response:
        """The Task with the provider's new status (and statusReason, required when rejected)."""
        d = door()
        provider = d.provider_of(request)
        now = await d.current(provider, resource_id)
        try:
            received = Task.model_validate_json(await request.body())
        except ValidationError as exc:
            raise invalid(exc, "Task") from None
        return fhir(task(await d.answer(provider, now, received)))

    @app.patch("/fhir/Task/{resource_id}", tags=["fhir"])
    async def patch_task(resource_id: str, request: Request) -> Response:
        """JSON Patch on /status and /statusReason, or {"status": ..., "statusReason": ...}."""
        d = door()
        provider = d.provider_of(request)
        now = await d.current(provider, resource_id)
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise FhirError(Refusal.VALIDATION, "the body is not JSON") from None
        patched = _patched(task(now).model_dump(mode="json", exclude_none=True), body)
        try:
            received = Task.model_validate(patched)
        except ValidationError as exc:
            raise invalid(exc, "Task after the patch") from None
        return fhir(task(await d.answer(provider, now, received)))


def _patched(current: dict[str, Any], body: Any) -> dict[str, Any]:
    """The Task after a JSON Patch (a list of operations) or the simple form (an object)."""
    if isinstance(body, dict):
        extra = set(body) - {*PATCHABLE, "resourceType", "id"}
        if extra:
            raise FhirError(
                Refusal.VALIDATION, f"only {', '.join(PATCHABLE)} may be patched, not {sorted(extra)}"
            )
        return current | body
    if not isinstance(body, list):
        raise FhirError(Refusal.VALIDATION, "send a JSON Patch (a list of operations) or an object")
    result: dict[str, Any] = json.loads(json.dumps(current))  # a copy
    for op in body:
        _apply(result, op)
    return result


def _apply(doc: dict[str, Any], op: Any) -> None:
    """One JSON Patch (RFC 6902) operation; add, replace, remove and test, on status and statusReason."""
    if (
        not isinstance(op, dict)
        or not isinstance(op.get("path"), str)
        or op.get("op")
        not in (
            "add",
            "replace",
            "remove",
            "test",
        )
    ):
        raise FhirError(Refusal.VALIDATION, f"not a JSON Patch operation this server takes: {op!r}")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    if not parts or (op["op"] != "test" and parts[0] not in PATCHABLE):
        raise FhirError(
            Refusal.VALIDATION, f"only /status and /statusReason may be patched, not {op['path']}"
        )
    parent: Any = doc
    for part in parts[:-1]:
        parent = parent.setdefault(part, {}) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            raise FhirError(Refusal.VALIDATION, f"cannot patch {op['path']}")
    last = parts[-1]
    if op["op"] == "test":
        if parent.get(last) != op.get("value"):
            raise FhirError(Refusal.CONFLICT, f"test failed: {op['path']} is {parent.get(last)!r}")
    elif op["op"] == "remove":
        parent.pop(last, None)
    else:
        parent[last] = op.get("value")


def _updated(value: str) -> Any:
    """A `_lastUpdated` parameter: a prefix (gt, ge, lt, le) and an instant."""
    prefix, instant = value[:2], value[2:]
    if prefix not in SEARCH_PREFIXES:
        raise FhirError(
            Refusal.BAD_REQUEST,
            "_lastUpdated takes gt, ge, lt or le and an instant, e.g. gt2026-01-05T09:00:00Z",
        )
    try:
        at = datetime.fromisoformat(instant.replace(" ", "+"))  # a '+' not percent-encoded arrives as ' '
    except ValueError:
        raise FhirError(Refusal.BAD_REQUEST, f"_lastUpdated: {instant!r} is not an instant") from None
    at = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)  # the record writes UTC
    column = case_referrals.c.updated_at
    return {"gt": column > at, "ge": column >= at, "lt": column < at, "le": column <= at}[prefix]


def _count(value: str | None) -> int:
    if value is None:
        return 100
    if not value.isdigit() or not 0 < int(value) <= PAGE_MAX:
        raise FhirError(Refusal.BAD_REQUEST, f"_count is a number from 1 to {PAGE_MAX}")
    return int(value)


def _utc(at: datetime) -> datetime:
    """SQLite gives back naive datetimes; the record writes UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)
