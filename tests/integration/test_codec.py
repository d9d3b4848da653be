"""With a payload key, client data is encrypted in Temporal and readable only through the codec."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import uuid

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from domain import commands as c
from ops.api import add_codec_routes, create_app
from ops.codec import EncryptionCodec, data_converter
from ops.facade import CaseError, CaseOps
from tests.integration.test_callback import DIRECTORY, serving
from tests.scenario import ALICE, PROGRAMS, opening
from worker import build_worker, workflow_runner
from workflows.case import CaseWorkflow
from workflows.search import workflow_id

KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.mark.asyncio(loop_scope="session")
async def test_client_data_is_encrypted_in_temporal_and_the_ui_can_decode_it(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    converter = data_converter(KEY)
    secure = Client(
        time_env.client.service_client, namespace=time_env.client.namespace, data_converter=converter
    )
    task_queue = f"codec-{uuid.uuid4().hex[:8]}"
    ops = CaseOps(secure, PROGRAMS, task_queue, clock=time_env.get_current_time)
    async with build_worker(secure, record_store, task_queue):
        number = (await ops.open_case(opening("general"))).case.number
        await ops.act(number, c.AddNote(actor=ALICE, text="lives at 12 Harbour Road"))
        assert (await ops.view(number)).case.client.family_name == "Okafor"  # readable with the key
        while (await ops.view(number)).unrecorded:
            await asyncio.sleep(0.05)
        without_key = CaseOps(time_env.client, PROGRAMS, task_queue)
        with pytest.raises(CaseError, match="is encrypted: set CASEWORK_PAYLOAD_KEY"):
            await without_key.view(number)
        await secure.get_workflow_handle(workflow_id(number)).terminate(reason="test finished")

    # what Temporal stores: no name, no address, no note in any payload
    history = await time_env.client.get_workflow_handle(workflow_id(number)).fetch_history()
    raw = history.to_json()
    assert "Okafor" not in raw and "Harbour Road" not in raw
    assert "binary/encrypted" in encodings(raw)

    # the replayer needs the same converter
    result = await Replayer(
        workflows=[CaseWorkflow], data_converter=converter, workflow_runner=workflow_runner()
    ).replay_workflow(history)
    assert result.replay_failure is None

    # the UI's codec server (the API) decodes for the browser; the wrong key is refused
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads
    body = {"payloads": [MessageToDict(p) for p in started]}
    app = create_app(ops, DIRECTORY, {}, None)
    add_codec_routes(app, converter.payload_codec, ["http://127.0.0.1:8233"])  # type: ignore[arg-type]
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        decoded = await http.post("/codec/decode", json=body, headers={"Origin": "http://127.0.0.1:8233"})
        assert decoded.status_code == 200
        assert decoded.headers["access-control-allow-origin"] == "http://127.0.0.1:8233"
        data = base64.b64decode(decoded.json()["payloads"][0]["data"])
        assert b"Okafor" in data
        other = create_app(ops, DIRECTORY, {}, None)
        add_codec_routes(other, EncryptionCodec(os.urandom(32)), [])
        async with serving(other) as base2, httpx.AsyncClient(base_url=base2) as http2:
            refused = await http2.post("/codec/decode", json=body)
            assert refused.status_code == 400 and "another key" in refused.json()["detail"]


def encodings(history_json: str) -> set[str]:
    """The payload encodings in a JSON history (metadata values there are base64)."""
    return {
        base64.b64decode(v).decode(errors="replace")
        for v in re.findall(r'"encoding":\s*"([A-Za-z0-9+/=]+)"', history_json)
    }


def test_a_wrong_length_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        data_converter(base64.b64encode(b"short").decode())
