"""The people of the API tests, their keys, and `casework` at a terminal signed in as one of them
(through the HTTP API served in the test's process)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.auth import digest
from domain.models import Actor, Role
from service.facade import CaseOps
from tests.integration.test_callback import DIRECTORY, serving
from tests.processes import environment

PEOPLE = {
    "alice": Actor(id="alice", role=Role.CASE_MANAGER),
    "bob": Actor(id="bob", role=Role.CASE_MANAGER),
    "sam": Actor(id="sam", role=Role.SUPERVISOR),
    "lead": Actor(id="lead-general", role=Role.PROGRAM_LEAD),
    "provider": Actor(id="shelter-north", role=Role.PROVIDER),
    # A supervisor of nobody else's cases: a fuzzing run on the shared dev server sees only the
    # cases it opens itself, never other tests' cases whose workers have gone.
    "fuzzer": Actor(id="fuzzing-supervisor", role=Role.SUPERVISOR),
}
KEYS = {digest(f"key-{name}"): actor for name, actor in PEOPLE.items()}


@asynccontextmanager
async def terminal(ops: CaseOps, store: AsyncEngine) -> AsyncIterator[Callable[[str], dict[str, str]]]:
    """The API on a free port; `as_(who)` is the environment of `casework` signed in as who."""
    async with serving(create_app(ops, DIRECTORY, KEYS, store)) as base:
        yield lambda who: environment(api_url=base, api_key=f"key-{who}")
