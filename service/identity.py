"""The client side of proven actors (workflows/identity.py): casework's entry points sign
who acts on each command and case start they send to Temporal.

    with acting(keys, actor, case_number):
        await handle.execute_update(...)     # carries the signed `casework-actor` header
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    StartWorkflowUpdateInput,
    WorkflowHandle,
    WorkflowUpdateHandle,
)

from domain.models import Actor
from workflows.identity import HEADER, ActorKeys

_SIGNED: ContextVar[Payload | None] = ContextVar("casework_signed_actor", default=None)


@contextmanager
def acting(keys: ActorKeys, actor: Actor, case: str, now: datetime) -> Iterator[None]:
    """Sign `actor` for `case` (valid from `now`, Temporal's time) on the calls made inside."""
    assert keys.keys, "no actor key: the caller checks first"
    token = _SIGNED.set(keys.sign(actor.model_dump(mode="json"), case, now))
    try:
        yield
    finally:
        _SIGNED.reset(token)


class _SignedHeaders(OutboundInterceptor):
    async def start_workflow_update(self, input: StartWorkflowUpdateInput) -> WorkflowUpdateHandle[Any]:
        if (signed := _SIGNED.get()) is not None:
            input.headers = {**input.headers, HEADER: signed}
        return await super().start_workflow_update(input)

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        if (signed := _SIGNED.get()) is not None:
            input.headers = {**input.headers, HEADER: signed}
        return await super().start_workflow(input)


class SignedHeaders(Interceptor):
    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _SignedHeaders(next)


def signing(client: Client) -> Client:
    """The same connection, with signed actors on the calls made inside `acting`."""
    config = client.config()
    if any(isinstance(i, SignedHeaders) for i in config["interceptors"]):
        return client
    config["interceptors"] = [*config["interceptors"], SignedHeaders()]
    return Client(**config)
