"""With a payload key, client data is encrypted in Temporal, each payload bound to its case,
and the Temporal UI's decoder (the API's /codec/decode) reads it only for people who may see
that case."""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import os
import pickle
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.json_format import MessageToDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter, WorkflowSerializationContext
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api.app import create_app
from api.auth import load_keys
from api.sessions import COOKIE, SessionTokens
from config.codec import ENCODING, LABEL, EncryptionCodec, SharedPydanticPayloadConverter, data_converter
from config.settings import Settings
from domain import commands as c
from service.facade import CaseOps
from service.refusals import CaseError
from store.keys import KeyRing, LocalMasterKey
from store.tables import record_access
from tests.conftest import case_worker
from tests.integration.test_callback import DIRECTORY, serving
from tests.keys import MASTER, MASTER_TEXT
from tests.scenario import ALICE, BOB, PROGRAMS, TO_MONITORING, opening
from worker import build_worker, workflow_runner
from workflows.case import CaseWorkflow
from workflows.search import workflow_id

KEY = MASTER_TEXT
SECRET = b"a-token-secret-for-the-codec-tests"
UI = "http://127.0.0.1:8233"
ALICE_KEY, BOB_KEY, SAM_KEY = (
    {"Authorization": "Bearer dev-alice"},
    {"Authorization": "Bearer dev-bob"},
    {"Authorization": "Bearer dev-sam"},
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Stack:
    ops: CaseOps
    client: Client
    http: httpx.AsyncClient
    alices_case: str  # alice manages it, sam supervises it
    bobs_case: str  # bob manages it, pat supervises it

    async def started_input(self, number: str) -> list[Payload]:
        """The case's input payloads as Temporal stores them (what the UI sends to decode)."""
        history = await self.client.get_workflow_handle(workflow_id(number)).fetch_history()
        return list(history.events[0].workflow_execution_started_event_attributes.input.payloads)

    async def decode(self, payloads: list[Payload], headers: dict[str, str] | None = None) -> httpx.Response:
        body = {"payloads": [MessageToDict(p) for p in payloads]}
        return await self.http.post("/codec/decode", json=body, headers=headers or {})


@asynccontextmanager
async def codec_stack(time_env: WorkflowEnvironment, record_store: AsyncEngine) -> AsyncIterator[Stack]:
    """A worker with the payload key, two cases, and the API (with the dev keys) serving the codec."""
    converter = data_converter(MASTER, KeyRing(record_store, MASTER))
    secure = Client(
        time_env.client.service_client, namespace=time_env.client.namespace, data_converter=converter
    )
    task_queue = f"codec-{uuid.uuid4().hex[:8]}"
    ops = CaseOps(secure, PROGRAMS, task_queue, record=record_store, clock=time_env.get_current_time)
    keys = load_keys(Settings().api_keys_file)
    app = create_app(
        ops, DIRECTORY, keys, record_store, SECRET, codec=converter.payload_codec, ui_origins=[UI]
    )
    async with build_worker(secure, record_store, task_queue):
        alices = (await ops.open_case(opening("general"))).case.number
        bobs_opening = opening("general").model_copy(
            update={"actor": BOB, "manager": "bob", "supervisor": "pat"}
        )
        bobs = (await ops.open_case(bobs_opening)).case.number
        async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
            yield Stack(ops, secure, http, alices, bobs)
        for number in (alices, bobs):
            await secure.get_workflow_handle(workflow_id(number)).terminate(reason="test finished")


async def decodes_logged(store: AsyncEngine, number: str) -> list[tuple[str, str]]:
    async with store.connect() as conn:
        rows = await conn.execute(
            select(record_access.c.actor_id, record_access.c.what).where(
                record_access.c.case_number == number
            )
        )
        return [(r.actor_id, r.what) for r in rows if r.what == "decode"]


def decoded_data(response: httpx.Response) -> bytes:
    return b"".join(base64.b64decode(p.get("data", "")) for p in response.json()["payloads"])


async def test_client_data_is_encrypted_in_temporal_and_each_payload_names_its_case(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    converter = data_converter(MASTER, KeyRing(record_store, MASTER))
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

    # what Temporal stores: no name, no address, no note in any payload; every one labelled
    history = await time_env.client.get_workflow_handle(workflow_id(number)).fetch_history()
    raw = history.to_json()
    assert "Okafor" not in raw and "Harbour Road" not in raw
    assert "binary/encrypted" in metadata_values(raw, "encoding")
    assert metadata_values(raw, LABEL) == {workflow_id(number)}

    # the replayer needs the same converter
    result = await Replayer(
        workflows=[CaseWorkflow], data_converter=converter, workflow_runner=workflow_runner()
    ).replay_workflow(history)
    assert result.replay_failure is None


async def test_decoding_without_credentials_is_refused_and_nothing_is_decoded(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with codec_stack(time_env, record_store) as stack:
        payloads = await stack.started_input(stack.alices_case)
        refused = await stack.decode(payloads)
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
        assert "Okafor" not in refused.text
        unknown = await stack.decode(payloads, {"Authorization": "Bearer guessed"})
        assert unknown.status_code == 401
        assert await decodes_logged(record_store, stack.alices_case) == []


async def test_another_case_manager_gets_not_found_for_alices_case(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with codec_stack(time_env, record_store) as stack:
        as_bob = await stack.decode(await stack.started_input(stack.alices_case), BOB_KEY)
        assert as_bob.status_code == 404 and "Okafor" not in as_bob.text
        assert await decodes_logged(record_store, stack.alices_case) == []


async def test_alice_decodes_her_case_and_the_decode_is_recorded(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with codec_stack(time_env, record_store) as stack:
        payloads = await stack.started_input(stack.alices_case)
        decoded = await stack.decode(payloads * 2, ALICE_KEY | {"Origin": UI})  # two payloads, one case
        assert decoded.status_code == 200 and b"Okafor" in decoded_data(decoded)
        assert decoded.headers["access-control-allow-origin"] == UI
        assert decoded.headers["access-control-allow-credentials"] == "true"
        assert await decodes_logged(record_store, stack.alices_case) == [
            ("alice", "decode")
        ]  # once a request


async def test_the_supervisor_decodes_his_teams_case_but_not_another_teams(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with codec_stack(time_env, record_store) as stack:
        team = await stack.decode(await stack.started_input(stack.alices_case), SAM_KEY)
        assert team.status_code == 200 and b"Okafor" in decoded_data(team)
        other = await stack.decode(await stack.started_input(stack.bobs_case), SAM_KEY)
        assert other.status_code == 404


async def test_a_payload_relabelled_to_another_case_does_not_decode(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with codec_stack(time_env, record_store) as stack:
        bobs = await stack.started_input(stack.bobs_case)
        for p in bobs:  # claimed to be alice's, which she may read
            p.metadata[LABEL] = workflow_id(stack.alices_case).encode()
        relabelled = await stack.decode(bobs, ALICE_KEY)
        assert relabelled.status_code == 400 and "Okafor" not in relabelled.text
        for p in bobs:  # and without a label, as if from before labels: only for who sees everything
            del p.metadata[LABEL]
        assert (await stack.decode(bobs, ALICE_KEY)).status_code == 404


async def test_the_signin_cookie_works_like_the_key(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with codec_stack(time_env, record_store) as stack:
        form = await stack.http.get("/signin")
        assert form.status_code == 200 and 'name="key"' in form.text
        wrong = await stack.http.post("/signin", data={"key": "guessed"})
        assert wrong.status_code == 401 and COOKIE not in wrong.headers.get("set-cookie", "")
        signed_in = await stack.http.post("/signin", data={"key": "dev-alice"})
        assert signed_in.status_code == 200 and "Signed in as alice" in signed_in.text
        set_cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "max-age=" in set_cookie
        stack.http.cookies.clear()  # sent explicitly below, as a browser would
        cookie = {"Cookie": f"{COOKIE}={signed_in.cookies[COOKIE]}"}

        payloads = await stack.started_input(stack.alices_case)
        decoded = await stack.decode(payloads, cookie)
        assert decoded.status_code == 200 and b"Okafor" in decoded_data(decoded)
        assert await decodes_logged(record_store, stack.alices_case) == [("alice", "decode")]
        assert (await stack.decode(await stack.started_input(stack.bobs_case), cookie)).status_code == 404

        signed_out = await stack.http.get("/signout")
        assert signed_out.status_code == 200 and f'{COOKIE}=""' in signed_out.headers["set-cookie"]


async def test_a_bad_or_expired_cookie_is_refused(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    async with codec_stack(time_env, record_store) as stack:
        payloads = await stack.started_input(stack.alices_case)
        sessions = SessionTokens(SECRET, timedelta(hours=8))
        expired = sessions.seal(ALICE, datetime.now(UTC) - timedelta(hours=9))
        forged = SessionTokens(b"another secret", timedelta(hours=8)).seal(ALICE, datetime.now(UTC))
        for token in (expired, forged, "garbage", sessions.seal(ALICE, datetime.now(UTC))[:-2] + "xx"):
            refused = await stack.decode(payloads, {"Cookie": f"{COOKIE}={token}"})
            assert refused.status_code == 401 and "Okafor" not in refused.text
        assert await decodes_logged(record_store, stack.alices_case) == []


async def test_the_ui_cannot_encode(time_env: WorkflowEnvironment, record_store: AsyncEngine) -> None:
    async with codec_stack(time_env, record_store) as stack:
        refused = await stack.http.post("/codec/encode", json={"payloads": []}, headers=ALICE_KEY)
        assert refused.status_code == 403


async def test_payloads_from_before_labels_still_decode_for_the_worker() -> None:
    key = os.urandom(32)
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"family_name": "Okafor"}')
    nonce = os.urandom(12)
    codec = EncryptionCodec(LocalMasterKey([key]))
    old = Payload(  # the format before labels: no label, no associated data
        metadata={"encoding": ENCODING, "encryption-key-id": codec.key_id},
        data=nonce + AESGCM(key).encrypt(nonce, plain.SerializeToString(), None),
    )
    in_case = codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id="case-1"))
    assert await in_case.decode([old]) == [plain]
    labelled = await in_case.encode([plain])
    assert labelled[0].metadata[LABEL] == b"case-1"
    other_case = codec.with_context(WorkflowSerializationContext(namespace="default", workflow_id="case-2"))
    with pytest.raises(ValueError, match="belongs to case-1"):
        await other_case.decode(labelled)
    stripped = Payload()
    stripped.CopyFrom(labelled[0])
    del stripped.metadata[LABEL]  # passing a new payload off as an old one
    with pytest.raises(InvalidTag):
        await codec.decode([stripped])


def metadata_values(history_json: str, key: str) -> set[str]:
    """The values of one metadata key in a JSON history (metadata values there are base64)."""
    return {
        base64.b64decode(v).decode(errors="replace")
        for v in re.findall(rf'"{re.escape(key)}":\s*"([A-Za-z0-9+/=]*)"', history_json)
    }


async def test_a_wrong_length_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LocalMasterKey.from_text(base64.b64encode(b"short").decode())
    assert LocalMasterKey.from_text(KEY).current_id == MASTER.current_id


async def test_every_context_shares_one_payload_converter_and_its_type_adapters() -> None:
    """The SDK makes a data converter per serialization context (per activation, per activity
    input); each used to bring a new pydantic converter with an empty cache of type adapters."""
    sealing = data_converter(MASTER, None)
    in_case = sealing.with_context(WorkflowSerializationContext(namespace="default", workflow_id="case-1"))
    per_activation = dataclasses.replace(in_case)  # as the SDK clones one per activation
    assert in_case.payload_codec is not sealing.payload_codec  # the codec does take the context
    converters = {id(_unwrapped(dc)) for dc in (sealing, in_case, per_activation, data_converter(None))}
    assert len(converters) == 1
    # nothing rebuilds it in place: a copy, a pickle or a context is the instance itself
    one = _unwrapped(in_case)
    assert copy.copy(one) is one and copy.deepcopy(one) is one and pickle.loads(pickle.dumps(one)) is one
    assert one.with_context(WorkflowSerializationContext(namespace="default", workflow_id="case-2")) is one
    # and it still converts both ways, sealed
    view = c.AddNote(actor=ALICE, text="called the landlord")
    payloads = await in_case.encode([view])
    assert payloads[0].metadata["encoding"] == ENCODING
    assert await in_case.decode(payloads, [c.AddNote]) == [view]


async def test_the_shared_converter_keeps_no_type_per_case(
    time_env: WorkflowEnvironment, record_store: AsyncEngine
) -> None:
    """The shared converter caches a type adapter per type hint for the life of the process: a
    payload type the sandbox made afresh for each case (one defined in workflows/case.py) would
    add an entry, and keep that case's copy of the module alive, for every case a worker loads."""
    adapters = SharedPydanticPayloadConverter().converters[b"json/plain"]._type_adapter  # type: ignore[attr-defined]

    async def cases_driven(count: int) -> None:
        async with case_worker(time_env, record_store) as ops:
            for _ in range(count):
                number = (await ops.open_case(opening("general"))).case.number
                for step in TO_MONITORING:
                    await ops.act(number, step)
                await ops.view(number)

    await cases_driven(2)
    after_two = adapters.cache_info().currsize
    assert after_two > 0  # the worker's conversions went through it
    await cases_driven(4)
    assert adapters.cache_info().currsize == after_two


def _unwrapped(converter: DataConverter) -> SharedPydanticPayloadConverter:
    """The pydantic converter inside the SDK's wrapper (which handles its own transfer types)."""
    inner = getattr(converter.payload_converter, "_inner_payload_converter", converter.payload_converter)
    assert isinstance(inner, SharedPydanticPayloadConverter)
    return inner
