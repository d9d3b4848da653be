"""Providers answer referrals through the signed HTTP callback."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import WorkflowEnvironment

from activities.signing import PROVIDER_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from api.app import create_app
from domain import commands as c
from domain.directory import Directory, EmailChannel, Provider
from domain.models import ReferralStatus, ServiceType
from service.facade import CaseOps
from tests.conftest import case_worker
from tests.processes import free_port
from tests.scenario import ALICE, opening, quiet_referral

pytestmark = pytest.mark.asyncio(loop_scope="session")
SECRETS = {"shelter-north": "north-secret", "food-bank": "food-secret"}
DIRECTORY = Directory(
    providers={
        pid: Provider(
            id=pid,
            name=pid,
            services=frozenset({ServiceType.HOUSING, ServiceType.INCOME_BENEFITS}),
            channel=EmailChannel(address=f"{pid}@providers.example.org"),
            callback_secret_env=f"CASEWORK_TEST_CALLBACK_{pid.upper().replace('-', '_')}",
        )
        for pid in SECRETS
    }
)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def signed(
    provider: str, body: dict[str, object], secret: str | None = None, stamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    ts = str(stamp if stamp is not None else int(time.time()))
    return raw, {
        PROVIDER_HEADER: provider,
        TIMESTAMP_HEADER: ts,
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret or SECRETS[provider], ts, raw),
    }


async def with_referral(ops: CaseOps) -> tuple[str, str]:
    number = (await ops.open_case(opening("general"))).case.number
    await ops.act(number, c.Accept(actor=ALICE))
    done = await ops.act(number, quiet_referral())
    return number, f"R{done.seq}"


async def test_providers_answer_through_the_signed_callback(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    for pid, secret in SECRETS.items():
        os.environ[f"CASEWORK_TEST_CALLBACK_{pid.upper().replace('-', '_')}"] = secret
    async with case_worker(time_env, record_store, DIRECTORY) as ops:
        number, referral = await with_referral(ops)
        async with (
            serving(create_app(ops, DIRECTORY, {}, None)) as base,
            httpx.AsyncClient(base_url=base) as http,
        ):

            async def post(provider: str, body: Mapping[str, object], **kw: object) -> httpx.Response:
                raw, headers = signed(provider, body, **kw)  # type: ignore[arg-type]
                return await http.post("/callbacks/referrals", content=raw, headers=headers)

            accept = {"case": number, "referral": referral, "answer": "accepted"}

            bad = await post("shelter-north", accept, secret="guessed")
            assert bad.status_code == 401 and bad.json()["detail"] == "the signature does not match"
            assert bad.headers["content-type"] == "application/problem+json"
            stale = await post("shelter-north", accept, stamp=int(time.time()) - 3600)
            assert stale.status_code == 401 and "timestamp" in stale.json()["detail"]
            nobody = await post("shelter-north", accept | {"referral": "R999"})
            assert nobody.status_code == 404 and "no referral R999" in nobody.json()["detail"]
            not_theirs = await post("food-bank", accept)
            assert not_theirs.status_code == 404
            no_case = await post("shelter-north", accept | {"case": "NO-SUCH", "referral": "R999"})
            assert no_case.status_code == 404
            # no case and no such referral on a real case read alike: case numbers cannot be probed
            assert no_case.json()["detail"] == nobody.json()["detail"].replace(number, "NO-SUCH")
            malformed = await post("shelter-north", accept | {"answer": "maybe"})
            assert malformed.status_code == 422 and "answer" in malformed.json()["detail"]
            unknown = await http.post(
                "/callbacks/referrals", content=b"{}", headers={PROVIDER_HEADER: "ghost"}
            )
            assert unknown.status_code == 401
            assert (await ops.view(number)).case.referrals[-1].status in (
                ReferralStatus.PENDING,
                ReferralStatus.SENT,
            )

            ok = await post("shelter-north", accept)
            assert ok.status_code == 200 and ok.json()["status"] == "accepted"
            again = await post("shelter-north", accept)  # a provider's retry: answered, not applied twice
            assert again.status_code == 200 and again.json()["status"] == "accepted"
            other = await post("shelter-north", accept | {"answer": "declined", "reason": "no beds"})
            assert other.status_code == 409 and "cannot be declined now" in other.json()["detail"]
            done = await post("shelter-north", accept | {"answer": "completed"})
            assert done.status_code == 200 and done.json()["status"] == "completed"

        referral_now = (await ops.view(number)).case.referrals[-1]
        assert referral_now.status is ReferralStatus.COMPLETED and referral_now.answered_by is not None
        assert referral_now.answered_by.id == "shelter-north"
