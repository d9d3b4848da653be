"""The suite's master key and clients that seal every case with its client's data key, as a
default installation does (store/keys.py, config/codec.py)."""

from __future__ import annotations

import base64
import os

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from config.codec import data_converter
from store.keys import KeyRing, LocalMasterKey

MASTER_TEXT = base64.b64encode(os.urandom(32)).decode()
MASTER = LocalMasterKey.from_text(MASTER_TEXT)


def key_ring(store: AsyncEngine, master: LocalMasterKey = MASTER) -> KeyRing:
    return KeyRing(store, master)


def secure_client(client: Client, store: AsyncEngine, master: LocalMasterKey = MASTER) -> Client:
    """`client`'s connection, with payloads sealed by data keys kept in `store`."""
    converter = data_converter(master, key_ring(store, master))
    return Client(client.service_client, namespace=client.namespace, data_converter=converter)
