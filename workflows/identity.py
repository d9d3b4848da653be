"""Proven actors: a command reaches a case only with an assertion that casework signed.

Temporal authorizes per namespace at best: anyone who can send an update (the Temporal
UI's "Send an Update", `temporal workflow update`, a script) could otherwise claim to be
any supervisor. So casework's own entry points (the API, the CLI) sign who acts, for which
case, until when, with the deployment's actor key (HMAC-SHA256), and send it in a Temporal
header. The worker checks it in the update's validator — before anything is written — and
when a case is started; a missing, forged, expired or mismatched assertion is refused.

Standard library and the domain's `Refusal` only: the workflow sandbox passes it through.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from domain.errors import Refusal

HEADER = "casework-actor"
# Long enough for a command to wait out a busy worker; a retry signs anew.
LIFETIME = timedelta(minutes=5)
REFUSED = Refusal.UNAUTHENTICATED.value


class Unproven(Exception):
    """The assertion does not prove who acts: the message says why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class ActorKeys:
    """The deployment's actor keys: the first signs, any verifies (so a key can be rotated)."""

    keys: tuple[bytes, ...]

    @classmethod
    def of(cls, *secrets: str) -> ActorKeys:
        return cls(tuple(s.encode() for s in secrets if s))

    def sign(self, actor: dict[str, str], case: str, now: datetime) -> Payload:
        claims = {"actor": actor, "case": case, "exp": int((now + LIFETIME).timestamp())}
        body = _b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
        mac = hmac.new(self.keys[0], body.encode(), hashlib.sha256).digest()
        return Payload(metadata={"encoding": b"binary/plain"}, data=f"{body}.{_b64(mac)}".encode())

    def verify(self, header: Payload | None, case: str, now: datetime) -> dict[str, str]:
        """The actor the header proves, for this case, now; Unproven otherwise."""
        if not self.keys:
            raise Unproven("this worker has no actor key (CASEWORK_ACTOR_KEY): it cannot check who acts")
        if header is None:
            raise Unproven(
                "the command carries no signed actor: act through casework (the API or the CLI), "
                "not a raw Temporal update"
            )
        body, _, mac = header.data.decode(errors="replace").partition(".")
        try:
            signature = _unb64(mac)
        except ValueError:
            signature = b""
        if not any(
            hmac.compare_digest(signature, hmac.new(k, body.encode(), hashlib.sha256).digest())
            for k in self.keys
        ):
            raise Unproven("the actor's signature is not casework's")
        claims: dict[str, Any] = json.loads(_unb64(body))
        if claims.get("case") != case:
            raise Unproven(f"the signed actor is for case {claims.get('case')}, not {case}")
        if now.timestamp() > claims.get("exp", 0):
            raise Unproven("the signed actor has expired: send the command again")
        actor: dict[str, str] = claims["actor"]
        return actor


def _same_actor(proven: dict[str, str], claimed: Any) -> bool:
    return isinstance(claimed, dict) and (claimed.get("id"), claimed.get("role")) == (
        proven.get("id"),
        proven.get("role"),
    )


def case_of(workflow_id: str) -> str:
    return workflow_id.removeprefix("case-")


class ActorCheck(Interceptor):
    """The worker's door: every `act` update and every case start must prove its actor."""

    def __init__(self, keys: ActorKeys) -> None:
        self.keys = keys

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        keys = self.keys

        class Inbound(WorkflowInboundInterceptor):
            def handle_update_validator(self, input: HandleUpdateInput) -> None:
                # Only the validator checks: it runs before anything is written, and never on
                # replay (so a rotated key never breaks a case's history).
                if input.update == "act":
                    command = input.args[0] if input.args else None
                    claimed = command.get("actor") if isinstance(command, dict) else None
                    _check(keys, input.headers.get(HEADER), claimed)
                super().handle_update_validator(input)

            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                # A run continued as new was started by the run before it (already proven).
                if not workflow.unsafe.is_replaying() and workflow.info().continued_run_id is None:
                    start = input.args[0] if input.args else None
                    _check(keys, input.headers.get(HEADER), _starting_actor(start), required=True)
                return await super().execute_workflow(input)

        return Inbound


def _starting_actor(start: Any) -> Any:
    """Who started the case: who opened it, or who restored it."""
    for part in ("restore", "opening"):
        given = getattr(start, part, None)
        if given is not None:
            return given.actor.model_dump(mode="json")
    return None


def _check(keys: ActorKeys, header: Payload | None, claimed: Any, required: bool = False) -> None:
    if claimed is None:
        if not required:
            return  # a command without an actor: the domain refuses it with the field that is missing
        raise ApplicationError(
            "a case starts only by opening or restoring it", type=REFUSED, non_retryable=True
        )
    try:
        proven = keys.verify(header, case_of(workflow.info().workflow_id), workflow.now())
    except Unproven as exc:
        raise ApplicationError(str(exc), type=REFUSED, non_retryable=True) from None
    if not _same_actor(proven, claimed):
        raise ApplicationError(
            f"the command names {claimed.get('id')} ({claimed.get('role')}) but casework signed for "
            f"{proven.get('id')} ({proven.get('role')})",
            type=REFUSED,
            non_retryable=True,
        )
