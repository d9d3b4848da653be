"""Registering casework's search attributes on a Temporal namespace, idempotently."""

from __future__ import annotations

import asyncio

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.service import RPCError, RPCStatusCode

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
