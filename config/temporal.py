"""Reaching Temporal: the client every process connects with (the payload codec and its key),
the key that signs who acts, and casework's search attributes on a namespace (registered
idempotently). Each key is found by one rule, so every process of an installation (worker, API,
the CLI's operator commands) finds the same one."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError, RPCStatusCode

from config.codec import data_converter
from config.settings import Settings
from store.db import engine as make_engine
from store.keys import KeyRing, LocalMasterKey
from workflows.identity import ActorKeys
from workflows.search import ALL_KEYS


def _indexed_type(kind: SearchAttributeIndexedValueType) -> IndexedValueType.ValueType:
    return IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.name}")


async def register_search_attributes(client: Client, namespace: str, within: float = 30.0) -> None:
    """Add the case search attributes that are missing and wait until they are usable."""
    wanted = {key.name: _indexed_type(key.indexed_value_type) for key in ALL_KEYS}
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
    except RPCError as exc:
        if exc.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        # The time-skipping test server can add attributes but not list them.
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=wanted)
        )
        return
    missing = {name: kind for name, kind in wanted.items() if name not in existing.custom_attributes}
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as exc:  # another process registered them first
        if exc.status is not RPCStatusCode.ALREADY_EXISTS:
            raise
    async with asyncio.timeout(within):
        while True:
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=namespace)
            )
            if set(wanted) <= set(listed.custom_attributes):
                return
            await asyncio.sleep(0.2)


@functools.cache
def runtime() -> Runtime:
    """The SDK's core (Rust) writes its own coloured text to stderr by default; forwarded to
    Python's logging, its warnings come out as the same JSON lines as everything else."""
    core_logs = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    return Runtime(telemetry=TelemetryConfig(logging=core_logs))


async def connect(settings: Settings, keys: KeyRing | None = None) -> Client:
    """A client whose payloads are encrypted: a case's with its client's data key from `keys`
    (default: a key ring over the record at CASEWORK_DATABASE_URL), others with the master key."""
    master = master_key(settings)
    if master is None:  # a deployment may choose it, but never without being told
        logging.getLogger("casework.temporal").warning(
            "client data goes to Temporal and the record in clear: set CASEWORK_PAYLOAD_KEY "
            "(casework dev makes var/payload.key on its own)"
        )
    elif keys is None:
        keys = key_ring(settings, make_engine(settings.database_url))
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(master, keys),
        runtime=runtime(),
    )


def master_key(settings: Settings) -> LocalMasterKey | None:
    """The deployment's master key (the payload key): wraps every client's data key."""
    text = payload_key(settings)
    return LocalMasterKey.from_text(text) if text else None


def key_ring(settings: Settings, engine: AsyncEngine) -> KeyRing:
    """Clients' data keys in the record at `engine`, unwrapped with the master key."""
    return KeyRing(engine, master_key(settings))


def payload_key_file(settings: Settings) -> Path:
    """Where `casework dev` keeps the payload key it made (var/payload.key)."""
    return settings.var_dir / "payload.key"


def payload_key(settings: Settings) -> str | None:
    """CASEWORK_PAYLOAD_KEY (from the environment or a secret file; comma-separated to rotate: the
    first wraps, all unwrap), else the key `casework dev` keeps in var/payload.key, else none:
    client data in clear (a deployment's choice, not a default)."""
    if settings.payload_key is not None:
        return settings.payload_key.get_secret_value()
    path = payload_key_file(settings)
    return path.read_text().strip() if path.exists() else None


def actor_keys(settings: Settings) -> ActorKeys:
    """CASEWORK_ACTOR_KEY (comma-separated: the first signs, all verify, for rotation), or the
    key `casework dev` keeps in var/actor.key."""
    if settings.actor_key is not None:
        return ActorKeys.of(*settings.actor_key.get_secret_value().split(","))
    path = settings.var_dir / "actor.key"
    return ActorKeys.of(path.read_text().strip()) if path.exists() else ActorKeys(())
