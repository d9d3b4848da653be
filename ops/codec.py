"""Encrypting workflow payloads: client personal data never reaches Temporal in the clear.

With CASEWORK_PAYLOAD_KEY set (32 random bytes, base64), every payload the client, the
worker and the replayer exchange with Temporal is AES-256-GCM encrypted; search
attributes are not payloads and stay plaintext, which is why they carry no personal
data. The Temporal UI decodes through the codec endpoints of the API
(POST /codec/decode), so people with a key see cases and people without see ciphertext.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

ENCODING = b"binary/encrypted"


class EncryptionCodec(PayloadCodec):
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the payload key must be 32 bytes (base64 of 32 random bytes)")
        self.key_id = hashlib.sha256(key).hexdigest()[:12].encode()  # names the key, never reveals it
        self._aes = AESGCM(key)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) if p.metadata.get("encoding") == ENCODING else p for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(12)
        sealed = self._aes.encrypt(nonce, payload.SerializeToString(), None)
        return Payload(metadata={"encoding": ENCODING, "encryption-key-id": self.key_id}, data=nonce + sealed)

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encryption-key-id") != self.key_id:
            raise ValueError("payload was encrypted with another key")
        plain = self._aes.decrypt(payload.data[:12], payload.data[12:], None)
        return Payload.FromString(plain)


def key_from(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ValueError("CASEWORK_PAYLOAD_KEY is not base64") from exc


def data_converter(payload_key: str | None) -> DataConverter:
    """Pydantic models across the boundary, encrypted when a key is configured."""
    if not payload_key:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(key_from(payload_key)))
