"""The worker: wires a Temporal client, the case workflow and the recording activities.

casework worker        # against CASEWORK_TEMPORAL_ADDRESS
casework dev           # starts a local Temporal dev server first, then this
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib.util
import py_compile
import sys
from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.answer_links import AnswerLinks
from activities.channels import SmtpConfig
from activities.deliveries import Deliverer
from activities.records import CaseRecorder
from config.codec import key_ring_of
from config.links import answer_link_secrets, public_url
from config.settings import Settings
from config.temporal import actor_keys, connect, key_ring
from domain.directory import Directory, load_directory
from domain.policy import Program, ProgramError, load_programs
from store.db import engine as make_engine
from store.db import migrate
from store.keys import KeyRing
from workflows.case import CaseWorkflow
from workflows.identity import ActorCheck

log = structlog.get_logger("casework.worker")

# Our pure domain and these libraries are deterministic and import-safe: pass them
# through the sandbox instead of re-importing them for every workflow run.
PASSTHROUGH: Sequence[str] = (
    "domain",
    "activities.contracts",
    "workflows.identity",
    "workflows.contracts",
    "workflows.search",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "email_validator",
)


def smtp_config(settings: Settings) -> SmtpConfig:
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        timeout=settings.smtp_timeout,
        sender=settings.mail_from,
    )


def answer_links(settings: Settings) -> AnswerLinks | None:
    """The signer of the answer links in referral emails; None (no links) without a secret."""
    secrets = answer_link_secrets(settings)
    return AnswerLinks(secrets, public_url(settings)) if secrets else None


def build_worker(
    client: Client,
    engine: AsyncEngine,
    task_queue: str,
    settings: Settings | None = None,
    directory: Directory | None = None,
    keys: KeyRing | None = None,
) -> Worker:
    """`keys`: clients' data keys in `engine`'s record (default: the key ring of the client's
    payload codec, so the record and Temporal seal a case with the same key)."""
    settings = settings or Settings()
    directory = directory if directory is not None else load_directory(settings.directory_dir)
    keys = keys if keys is not None else key_ring_of(client, engine)
    recorder = CaseRecorder(
        engine,
        callback_url=settings.callback_url,
        links=answer_links(settings),
        keys=keys,
        programs=programs_if_any(settings),
    )
    deliverer = Deliverer(engine, directory, smtp_config(settings), keys)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CaseWorkflow],
        activities=[recorder.record, deliverer.deliver],
        workflow_runner=workflow_runner(),
        interceptors=[ActorCheck(actor_keys(settings))],
        max_cached_workflows=settings.cached_cases,
    )


def programs_if_any(settings: Settings) -> dict[str, Program]:
    """The installation's programs, for recording batches sent without theirs (workflows
    started before batches carried it); none if the folder has none."""
    try:
        return load_programs(settings.programs_dir)
    except ProgramError:
        return {}


# What the sandbox imports afresh for every case it loads (a run's module state must not leak
# into another run): the workflow's own modules; everything else is passed through.
SANDBOXED_MODULES: Sequence[str] = ("workflows", "workflows.case")


@functools.cache
def bytecode_for_sandboxed_modules() -> None:
    """Write the bytecode of the modules the sandbox imports for every case it loads. Without it
    (a checkout run with PYTHONDONTWRITEBYTECODE, as many containers and CI machines set) each of
    those imports compiled workflows/case.py from source again: 7-10 % of a busy worker's CPU,
    in the first task of every case opened or loaded. An installed package has its bytecode
    already; where the folder is read-only this does nothing and the worker only runs slower."""
    for name in SANDBOXED_MODULES:
        source = sys.modules[name].__file__
        if source and source.endswith(".py"):
            with contextlib.suppress(OSError, py_compile.PyCompileError):
                py_compile.compile(source, cfile=importlib.util.cache_from_source(source), doraise=True)


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandbox every worker and the replay tests use."""
    bytecode_for_sandboxed_modules()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


def freeze_startup_heap() -> None:
    """Leave what the worker loaded at start out of the garbage collector's full collections.

    A worker's heap is mostly what it imported (pydantic's schemas, SQLAlchemy, the SDK, the
    cryptography bindings): ~140,000 of the ~246,000 objects the collector tracked after a busy
    round. A full collection walks them all, and under load a worker ran one every ~75 cases,
    each walking all of that again (bench/README.md). Frozen, those objects are never walked
    (they are still freed by reference counting if they die); the cases' own objects are
    collected as before. Call once, after everything is loaded."""
    gc.collect()
    gc.freeze()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or forever). Migrates the record store first."""
    engine = make_engine(settings.database_url)
    await migrate(engine)
    keys = key_ring(settings, engine)
    client = await connect(settings, keys)
    worker = build_worker(client, engine, settings.task_queue, settings, keys=keys)
    freeze_startup_heap()
    log.info("worker started", task_queue=settings.task_queue, temporal=settings.temporal_address)
    try:
        async with worker:
            await (stop.wait() if stop else asyncio.Event().wait())
    finally:
        await engine.dispose()
        log.info("worker stopped")
