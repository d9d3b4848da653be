"""Encrypting workflow payloads: client personal data never reaches Temporal in the clear.

With a payload key (32 random bytes, base64: CASEWORK_PAYLOAD_KEY, or the var/payload.key
`casework dev` makes; config.temporal.payload_key is the rule), every payload the client, the
worker and the replayer exchange with Temporal is AES-256-GCM encrypted; search
attributes are not payloads and stay plaintext, which is why they carry no personal
data.

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

import base64
import copy
import dataclasses
import hashlib
import os
from collections.abc import Sequence
from typing import Self

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

ENCODING = b"binary/encrypted"
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
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the payload key must be 32 bytes (base64 of 32 random bytes)")
        self.key_id = hashlib.sha256(key).hexdigest()[:12].encode()  # names the key, never reveals it
        self._aes = AESGCM(key)
        self.workflow_id: str | None = None  # the workflow whose payloads this copy converts

    def with_context(self, context: SerializationContext) -> Self:
        """A copy for one workflow's payloads (the SDK calls this for every conversion)."""
        bound = copy.copy(self)
        bound.workflow_id = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            bound.workflow_id = context.workflow_id
        return bound

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) if is_encrypted(p) else p for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(12)
        label = (self.workflow_id or "").encode()
        sealed = self._aes.encrypt(nonce, payload.SerializeToString(), _associated_data(label))
        metadata = {"encoding": ENCODING, "encryption-key-id": self.key_id, LABEL: label}
        return Payload(metadata=metadata, data=nonce + sealed)

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encryption-key-id") != self.key_id:
            raise ValueError("payload was encrypted with another key")
        label = payload.metadata.get(LABEL)
        if label and self.workflow_id and label.decode(errors="replace") != self.workflow_id:
            # a payload copied from another case into this workflow's history or input
            raise ValueError(f"payload belongs to {label.decode(errors='replace')}, not {self.workflow_id}")
        # raises InvalidTag when the data or its label were changed
        plain = self._aes.decrypt(payload.data[:12], payload.data[12:], _associated_data(label))
        return Payload.FromString(plain)


def key_from(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ValueError("the payload key (CASEWORK_PAYLOAD_KEY or var/payload.key) is not base64") from exc


def data_converter(payload_key: str | None) -> DataConverter:
    """Pydantic models across the boundary, encrypted when a key is configured."""
    if not payload_key:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(key_from(payload_key)))
