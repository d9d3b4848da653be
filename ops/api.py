"""The HTTP API. For now: the callback where providers answer referrals.

    POST /callbacks/referrals
    X-Casework-Provider: <provider id>
    X-Casework-Timestamp: <unix seconds>
    X-Casework-Signature: sha256=<HMAC-SHA256(secret, timestamp + "." + body)>
    {"case": "261125-7KQ2", "referral": "R6", "answer": "accepted", "reason": ""}

The answer goes to the case as the `act` update with the provider as actor, so the
domain decides exactly as for staff: a second answer to an answered referral, or an
answer to someone else's referral, is refused and nothing is written. Errors are
RFC 9457 problem details.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from activities.signing import PROVIDER_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from domain.commands import AnswerReferral
from domain.directory import Directory, load_directory
from domain.models import Actor, Role
from domain.policy import load_programs
from ops.facade import CaseError, CaseOps
from ops.settings import Settings

STATUS_FOR = {
    "not_found": 404,
    "forbidden": 403,
    "invalid_transition": 409,
    "guard_failed": 409,
    "closed": 409,
    "conflict": 409,
    "validation": 422,
    "unavailable": 503,
}


class ProviderAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case: str = Field(min_length=1, max_length=40)
    referral: str = Field(min_length=1, max_length=20)
    answer: Literal["accepted", "declined", "completed", "no_show"]
    reason: str = Field(default="", max_length=4000)


def problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        media_type="application/problem+json",
        content={"type": "about:blank", "title": title, "status": status, "detail": detail},
    )


def create_app(ops: CaseOps, directory: Directory) -> FastAPI:
    app = FastAPI(
        title="casework",
        version="0.1.0",
        description="Case management where every case is a durable Temporal workflow.",
    )
    app.state.ops = ops

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/callbacks/referrals", responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}, 503: {}})
    async def referral_answer(request: Request) -> JSONResponse:
        body = await request.body()
        provider_id = request.headers.get(PROVIDER_HEADER, "")
        provider = directory.provider(provider_id)
        if provider is None:
            return problem(401, "Unknown provider", f"{PROVIDER_HEADER} names no provider in the directory")
        secret_env = provider.answer_secret_env
        secret = os.environ.get(secret_env) if secret_env else None
        if not secret:
            return problem(
                401, "No callback secret", f"provider {provider.id} has no callback secret configured"
            )
        refusal = verify(
            secret,
            request.headers.get(TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
            now=time.time(),
        )
        if refusal is not None:
            return problem(401, "Bad signature", refusal)
        try:
            answer = ProviderAnswer.model_validate_json(body)
            command = AnswerReferral(
                actor=Actor(id=provider.id, role=Role.PROVIDER),
                referral_id=answer.referral,
                answer=answer.answer,
                reason=answer.reason,
            )
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            return problem(422, "Invalid answer", detail)
        try:
            view = await ops.act(answer.case, command)
        except CaseError as exc:
            status = STATUS_FOR.get(exc.kind, 400)
            if exc.kind == "forbidden":  # do not tell a provider about referrals that are not theirs
                status, exc.message = (
                    404,
                    f"no referral {answer.referral} for {provider.id} on case {answer.case}",
                )
            return problem(status, exc.kind.replace("_", " ").capitalize(), exc.message)
        referral = next(r for r in view.case.referrals if r.id == answer.referral)
        return JSONResponse({"case": answer.case, "referral": referral.id, "status": referral.status.value})

    return app


async def connected_app(settings: Settings) -> FastAPI:
    """The app wired to Temporal and the directory from settings."""
    from worker import connect

    client = await connect(settings)
    directory = load_directory(settings.directory_dir)
    ops = CaseOps(client, load_programs(settings.programs_dir), settings.task_queue, directory)
    return create_app(ops, directory)


async def serve(app: FastAPI, host: str, port: int, stop: asyncio.Event) -> None:
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False))
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
