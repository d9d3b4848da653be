"""Encrypting workflow payloads: client personal data never reaches Temporal in the clear.

With a master key (32 random bytes, base64: CASEWORK_PAYLOAD_KEY, or the var/payload.key
`casework dev` makes; config.temporal.master_key is the rule), every payload the client, the
worker and the replayer exchange with Temporal is AES-256-GCM encrypted: a case's payloads with
its client's data key (store/keys.py: wrapped by the master key, kept in the record, destroyed
when the client is erased, which leaves the case's history unreadable), any other payload with
the master key itself. Search attributes are not payloads and stay plaintext, which is why they
carry no personal data.

Every payload names its case: the SDK gives the codec the workflow a payload belongs to
(its serialization context), and the codec writes that workflow id (`case-<number>`) into
the payload's `casework-case` metadata and binds it as AES-GCM associated data. A payload
relabelled to another case no longer decrypts, so the API's codec endpoint (the Temporal
UI's decoder) can trust the label to decide who may read it. A payload encoded without a
workflow (none are, today) gets an empty label: only an actor who may see everything may
have it decoded. Payloads written before labels existed have no label and no associated
data; workers still read them (old cases replay), the codec endpoint treats them as
unlabelled.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Sequence
from typing import Self

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from store.keys import KeyRing, LocalMasterKey

ENCODING = b"binary/encrypted"
CASE_PREFIX = "case-"  # a case's workflow id: case-<number> (workflows/search.py)
LABEL = "casework-case"  # metadata: the workflow id of the payload's case ("" for none)


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def label_of(payload: Payload) -> str | None:
    """The workflow id an encrypted payload is bound to: "" for none, None for a payload from
    before labels (neither is a case)."""
    label = payload.metadata.get(LABEL)
    return None if label is None else label.decode(errors="replace")


def _associated_data(label: bytes | None) -> bytes | None:
    return None if label is None else b"casework-case:" + label


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM over every payload. A case's payloads are sealed with its client's data key
    (store/keys.py: erasing the client makes them unreadable, in history too); a payload of no
    case (none today) with the master key itself, as every payload was before data keys."""

    def __init__(self, master: LocalMasterKey, keys: KeyRing | None = None) -> None:
        self.master, self.keys = master, keys
        self._master_aes = {kid: AESGCM(raw) for kid, raw in master.raw.items()}
        self.key_id = master.current_id.encode()  # names the key, never reveals it
        self.workflow_id: str | None = None  # the workflow whose payloads this copy converts

    def with_context(self, context: SerializationContext) -> Self:
        """A copy for one workflow's payloads (the SDK calls this for every conversion)."""
        bound = copy.copy(self)
        bound.workflow_id = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            bound.workflow_id = context.workflow_id
        return bound

    def _case(self) -> str | None:
        """The case whose data key seals this copy's payloads (None: the master key does)."""
        if self.keys is None or not self.workflow_id or not self.workflow_id.startswith(CASE_PREFIX):
            return None
        return self.workflow_id.removeprefix(CASE_PREFIX)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        case = self._case()
        if case is None:
            return [self._encrypt(p, self.key_id, self._master_aes[self.master.current_id]) for p in payloads]
        assert self.keys is not None
        key = await self.keys.data_key(case)
        return [self._encrypt(p, key.id.encode(), key.aes) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [await self._decrypt(p) if is_encrypted(p) else p for p in payloads]

    def _encrypt(self, payload: Payload, key_id: bytes, aes: AESGCM) -> Payload:
        nonce = os.urandom(12)
        label = (self.workflow_id or "").encode()
        sealed = aes.encrypt(nonce, payload.SerializeToString(), _associated_data(label))
        metadata = {"encoding": ENCODING, "encryption-key-id": key_id, LABEL: label}
        return Payload(metadata=metadata, data=nonce + sealed)

    async def _key(self, payload: Payload) -> AESGCM:
        key_id = payload.metadata.get("encryption-key-id", b"").decode(errors="replace")
        if key_id in self._master_aes:
            return self._master_aes[key_id]
        label = label_of(payload) or ""
        if self.keys is None or not key_id.startswith("dk-") or not label.startswith(CASE_PREFIX):
            raise ValueError("payload was encrypted with another key")
        key = await self.keys.data_key(label.removeprefix(CASE_PREFIX), create=False)  # ClientErased
        if key.id != key_id:
            raise ValueError("payload was encrypted with another key")
        return key.aes

    async def _decrypt(self, payload: Payload) -> Payload:
        label = payload.metadata.get(LABEL)
        if label and self.workflow_id and label.decode(errors="replace") != self.workflow_id:
            # a payload copied from another case into this workflow's history or input
            raise ValueError(f"payload belongs to {label.decode(errors='replace')}, not {self.workflow_id}")
        aes = await self._key(payload)
        # raises InvalidTag when the data or its label were changed
        plain = aes.decrypt(payload.data[:12], payload.data[12:], _associated_data(label))
        return Payload.FromString(plain)


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """The pydantic payload converter, one per process however often the SDK asks for one.

    The SDK builds a new data converter, and with it a new payload converter, for every
    serialization context it needs: twice per workflow activation, and for every payload
    sequence headed elsewhere (an activity's input), since our codec takes the context (the
    payload's case). Each new pydantic converter came with an empty cache of type adapters and
    cost its construction: ~9 % of a busy worker's samples. It keeps no state but that cache
    (thread-safe), so one instance serves every context, and nothing may rebuild it in place:
    copies, pickles and contexts are the instance itself.

    The cache is keyed by type hint, so it would pin any class the sandbox makes per run; the
    workflow's payload types all live in passed-through modules (workflows/contracts.py,
    domain/), one class per process."""

    def __new__(cls) -> SharedPydanticPayloadConverter:
        one: SharedPydanticPayloadConverter | None = cls.__dict__.get("_one")  # not a base class's
        if one is None:
            one = super().__new__(cls)
            PydanticPayloadConverter.__init__(one)
            cls._one = one
        return one

    def __init__(self) -> None:
        """Made once, in __new__."""

    def with_context(self, context: SerializationContext) -> Self:
        return self  # none of its converters takes a context; the stock one would be rebuilt

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self

    def __reduce__(self) -> tuple[type[SharedPydanticPayloadConverter], tuple[()]]:
        return (type(self), ())  # unpickled: this process's instance, not a rebuilt copy


def data_converter(master: LocalMasterKey | None, keys: KeyRing | None = None) -> DataConverter:
    """Pydantic models across the boundary, encrypted when a master key is configured: with a
    key ring (the record's data keys), each case's payloads with its client's key."""
    converter = dataclasses.replace(
        pydantic_data_converter, payload_converter_class=SharedPydanticPayloadConverter
    )
    if master is None:
        return converter
    return dataclasses.replace(converter, payload_codec=EncryptionCodec(master, keys))


def key_ring_of(client: Client, engine: AsyncEngine) -> KeyRing:
    """The key ring the client's codec seals cases with; with no codec (no master key), one that
    seals nothing. `engine` is the record the key ring reads when the codec has none."""
    codec = client.data_converter.payload_codec
    if isinstance(codec, EncryptionCodec):
        return codec.keys if codec.keys is not None else KeyRing(engine, codec.master)
    return KeyRing(engine, None)
