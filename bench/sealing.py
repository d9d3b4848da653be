"""Benchmarks run sealed, as an installation does by default: each case's payloads in Temporal
and its record sealed with its client's data key, wrapped by a master key (store/keys.py,
config/codec.py). `--clear` on a benchmark measures without, for comparison."""

from __future__ import annotations

import base64
import os

from temporalio.client import Client

from config.codec import data_converter
from store.db import engine
from store.keys import KeyRing, LocalMasterKey

# The load generator and the worker processes (which inherit the environment) share one key.
os.environ.setdefault("CASEWORK_PAYLOAD_KEY", base64.b64encode(os.urandom(32)).decode())


def sealed(client: Client, store_url: str) -> Client:
    """`client`'s connection, sealing as a default installation does, data keys in `store_url`."""
    master = LocalMasterKey.from_text(os.environ["CASEWORK_PAYLOAD_KEY"])
    converter = data_converter(master, KeyRing(engine(store_url), master))
    return Client(client.service_client, namespace=client.namespace, data_converter=converter)


def in_clear(client: Client) -> Client:
    """`client`'s connection with casework's data converter and no key, as an installation
    without a master key runs (`--clear`)."""
    return Client(client.service_client, namespace=client.namespace, data_converter=data_converter(None))
