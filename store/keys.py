"""Each client's data key (envelope encryption), and sealing the record's personal fields with it.

Every case's client has a data key: 32 random bytes made when the case is first written, kept
in `client_keys` *wrapped* (encrypted) by the deployment's master key. What a person could be
recognised by is encrypted with the data key (AES-256-GCM), both in Temporal (every payload of
the case's workflow: config/codec.py) and in the record (the case's state, its events' changes,
the outbox's messages and addresses, delivery attempts, goals: activities/records.py). The
case's facts stay in clear columns so lists and reports need no key: stage, dates, manager,
program, risk, outcome, referral providers and statuses, follow-up dates.

Erasing a client (crypto-shredding) deletes the wrapped key: every sealed value of the case,
in Temporal's immutable history as in the record's rows and their old copies (a database's
free pages, WAL, backups), is unreadable from then on. The record's sealed values are also
overwritten with ERASED, so a view can tell "erased" from "damaged" without a key.

The master key is KMS-shaped (`MasterKey`: wrap and unwrap a data key, async, named by an id),
so a cloud KMS can replace the local one. `LocalMasterKey` keeps one or more 32-byte keys from
the environment or a file; the first wraps, every one unwraps, so a master key is rotated by
putting the new one first and re-wrapping (`KeyRing.rewrap`): data keys are unchanged, so
nothing sealed with them needs touching.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from store.db import insert_ignoring_duplicates, writing
from store.tables import client_keys

SEALED = "casework-sealed/1:"  # a sealed value: SEALED + data key id + ":" + base64(nonce + ciphertext)
ERASED = "casework-erased"  # what an erased client's sealed values are overwritten with


class ClientErased(Exception):
    """The client's data key was destroyed: what was sealed with it cannot be read."""

    def __init__(self, case: str) -> None:
        super().__init__(f"the client data of case {case} was erased")
        self.case = case


class KeyUnavailable(Exception):
    """A sealed value or payload needs a key this process does not have."""


def key_id_of(key: bytes) -> str:
    """A key's name: derived from it, revealing nothing of it (12 hex digits of its SHA-256)."""
    return hashlib.sha256(key).hexdigest()[:12]


class MasterKey(Protocol):
    """What casework needs of a KMS: wrap a data key under the current master key, and unwrap one
    wrapped under any master key it still has (named by `master_id`). `context` is bound to the
    wrapping (a data key moved to another case does not unwrap)."""

    @property
    def current_id(self) -> str: ...

    async def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]: ...

    async def unwrap(self, master_id: str, wrapped: bytes, context: bytes) -> bytes: ...


class LocalMasterKey:
    """Master keys held by this process (CASEWORK_PAYLOAD_KEY or var/payload.key; comma-separated
    to rotate: the first wraps, all unwrap)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys or any(len(k) != 32 for k in keys):
            raise ValueError("a master key is 32 bytes (base64 of 32 random bytes)")
        self._keys = {key_id_of(k): AESGCM(k) for k in keys}
        self.current_id = key_id_of(keys[0])
        self.raw = {key_id_of(k): k for k in keys}  # the payload codec's key for unlabelled payloads

    @classmethod
    def from_text(cls, text: str) -> LocalMasterKey:
        keys = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            try:
                keys.append(base64.b64decode(part, validate=True))
            except ValueError as exc:
                raise ValueError(
                    "the master key (CASEWORK_PAYLOAD_KEY or var/payload.key) is not base64"
                ) from exc
        return cls(keys)

    async def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(12)
        return self.current_id, nonce + self._keys[self.current_id].encrypt(nonce, data_key, context)

    async def unwrap(self, master_id: str, wrapped: bytes, context: bytes) -> bytes:
        aes = self._keys.get(master_id)
        if aes is None:
            raise KeyUnavailable(f"data key wrapped by master key {master_id}, which this process lacks")
        return aes.decrypt(wrapped[:12], wrapped[12:], context)


@dataclass(frozen=True)
class DataKey:
    case: str
    id: str
    aes: AESGCM

    def seal(self, value: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self.aes.encrypt(nonce, value, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        return self.aes.decrypt(sealed[:12], sealed[12:], context)


def _context(case: str, column: str) -> bytes:
    """What a sealed record value is bound to: its case and column (moved elsewhere, it fails)."""
    return f"casework-record:{case}:{column}".encode()


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED)


def is_erased(value: Any) -> bool:
    return isinstance(value, str) and value == ERASED


class Sealer:
    """Seals one case's personal values for the record (with no key: leaves them in clear)."""

    def __init__(self, case: str, key: DataKey | None) -> None:
        self.case, self.key = case, key

    def value(self, value: Any, column: str) -> Any:
        """A JSON value (a dict, a list, a string) as the record keeps it; None stays None."""
        if value is None or self.key is None:
            return value
        plain = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        sealed = self.key.seal(plain, _context(self.case, column))
        return f"{SEALED}{self.key.id}:{base64.b64encode(sealed).decode()}"

    def text(self, value: str | None, column: str) -> str | None:
        sealed = self.value(value, column)
        return None if sealed is None else str(sealed)


class Opener:
    """Reads one case's record values: sealed ones with its data key, clear ones as they are.
    A value of an erased client raises ClientErased (callers show "erased")."""

    def __init__(self, case: str, key: DataKey | None, erased: bool) -> None:
        self.case, self.key, self.erased = case, key, erased

    def value(self, stored: Any, column: str) -> Any:
        if is_erased(stored):
            raise ClientErased(self.case)
        if not is_sealed(stored):
            return stored
        if self.erased:
            raise ClientErased(self.case)
        key_id, _, data = stored.removeprefix(SEALED).partition(":")
        if self.key is None or self.key.id != key_id:
            raise KeyUnavailable(f"case {self.case}: a record value sealed with a key this process lacks")
        try:
            return json.loads(self.key.open(base64.b64decode(data), _context(self.case, column)))
        except InvalidTag:
            raise KeyUnavailable(f"case {self.case}: a record value does not open ({column})") from None

    def text(self, stored: str | None, column: str) -> str | None:
        value: Any = self.value(stored, column)
        return None if value is None else str(value)


_ABSENT = object()


@dataclass
class Rewrapped:
    """What a master key rotation did: data keys re-wrapped, and those left wrapped by a master
    key this process was not given (by its id)."""

    done: int = 0
    stranded: dict[str, int] = field(default_factory=dict)


class KeyRing:
    """This process's way to clients' data keys: made on first use, unwrapped by the master key,
    cached for `ttl` seconds (so an erasure reaches every process within it; the erasing process
    forgets at once). Without a master key (a deployment's choice: casework warns) nothing is
    sealed and sealed values cannot be read."""

    def __init__(
        self,
        engine: AsyncEngine,
        master: MasterKey | None,
        ttl: float = 60.0,
        size: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine, self.master, self.ttl, self.size, self.clock = engine, master, ttl, size, clock
        self._cache: OrderedDict[str, tuple[float, DataKey | None]] = OrderedDict()
        self._to_make: set[str] = set()
        self._makers: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    @property
    def encrypting(self) -> bool:
        return self.master is not None

    def _cached(self, case: str) -> DataKey | object | None:
        hit = self._cache.get(case)
        if hit is None or self.clock() - hit[0] > self.ttl:
            return _ABSENT
        self._cache.move_to_end(case)
        return hit[1]

    def _remember(self, case: str, key: DataKey | None) -> None:
        now = self.clock()
        self._cache[case] = (now, key)
        self._cache.move_to_end(case)
        # Keys past their time go as well as the least recently used beyond `size`: a worker
        # that opened 10,000 cases kept every key (~3.5 KB each) until then, 35 MB it never read.
        while self._cache and (
            len(self._cache) > self.size or now - next(iter(self._cache.values()))[0] > self.ttl
        ):
            self._cache.popitem(last=False)

    @property
    def held(self) -> int:
        """How many clients' keys this process holds unwrapped (or knows to be erased)."""
        return len(self._cache)

    def forget(self, case: str) -> None:
        self._cache.pop(case, None)

    async def _load(self, case: str) -> DataKey | object | None:
        """The case's data key; None if it was erased; _ABSENT if it has none yet."""
        assert self.master is not None
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(client_keys).where(client_keys.c.case_number == case))).first()
        if row is None:
            return _ABSENT
        if row.wrapped is None:
            return None
        raw = await self.master.unwrap(row.master_id, row.wrapped, case.encode())
        return DataKey(case, row.key_id, AESGCM(raw))

    async def data_key(self, case: str, create: bool = True) -> DataKey:
        """The case's data key, made (and stored, wrapped) on first use. Raises ClientErased."""
        if self.master is None:
            raise KeyUnavailable("no master key is configured (CASEWORK_PAYLOAD_KEY)")
        found = self._cached(case)
        if found is _ABSENT:
            found = await self._load(case)
            if found is _ABSENT and create:
                found = await self._create(case)
            if found is _ABSENT:
                raise KeyUnavailable(f"case {case} has no data key")
            assert found is None or isinstance(found, DataKey)
            self._remember(case, found)
        if found is None:
            raise ClientErased(case)
        assert isinstance(found, DataKey)
        return found

    async def _create(self, case: str) -> DataKey | object | None:
        """Make the case's data key. Keys asked for meanwhile are made together, in one write:
        on SQLite every write waits its turn for the file (and for the worker's recording in
        another process), so twenty cases opened at once would otherwise queue twenty times."""
        self._to_make.add(case)
        async with self._maker():
            if case in self._to_make:  # not yet made by the writer before us
                batch, self._to_make = sorted(self._to_make), set()
                made = {c: AESGCM.generate_key(bit_length=256) for c in batch}
                rows = [await self._wrapped_row(c, raw) for c, raw in made.items()]
                async with writing(self.engine) as conn:
                    written = await insert_ignoring_duplicates(conn, client_keys, rows, ["case_number"])
                if written == len(rows):  # every one ours: no need to read them back
                    for row in rows:
                        self._remember(
                            row["case_number"],
                            DataKey(row["case_number"], row["key_id"], AESGCM(made[row["case_number"]])),
                        )
        found = self._cached(case)
        if found is not _ABSENT:
            return found
        return await self._load(case)  # another process made one first: theirs stands

    def _maker(self) -> asyncio.Lock:
        """This process's one key writer (a lock per event loop: tests run several)."""
        return self._makers.setdefault(asyncio.get_running_loop(), asyncio.Lock())

    async def _wrapped_row(self, case: str, raw: bytes) -> dict[str, Any]:
        assert self.master is not None
        master_id, wrapped = await self.master.wrap(raw, case.encode())
        return {
            "case_number": case,
            "key_id": "dk-" + os.urandom(6).hex(),
            "master_id": master_id,
            "wrapped": wrapped,
            "created_at": datetime.now(UTC),
        }

    async def sealer(self, case: str) -> Sealer:
        return Sealer(case, await self.data_key(case) if self.encrypting else None)

    async def opener(self, case: str) -> Opener:
        return (await self.openers([case]))[case]

    async def openers(self, cases: Iterable[str]) -> dict[str, Opener]:
        """Openers for many cases with one query (a report, a provider's list)."""
        wanted = sorted(set(cases))
        found: dict[str, Opener] = {}
        if self.master is None:
            return {c: Opener(c, None, erased=False) for c in wanted}
        missing = []
        for case in wanted:
            hit = self._cached(case)
            if hit is _ABSENT:
                missing.append(case)
            else:
                found[case] = Opener(case, hit if isinstance(hit, DataKey) else None, erased=hit is None)
        for start in range(0, len(missing), 500):
            async with self.engine.connect() as conn:
                rows = await conn.execute(
                    select(client_keys).where(client_keys.c.case_number.in_(missing[start : start + 500]))
                )
                for row in rows:
                    key = None
                    if row.wrapped is not None:
                        raw = await self.master.unwrap(row.master_id, row.wrapped, row.case_number.encode())
                        key = DataKey(row.case_number, row.key_id, AESGCM(raw))
                    self._remember(row.case_number, key)
                    found[row.case_number] = Opener(row.case_number, key, erased=key is None)
        return found | {c: Opener(c, None, erased=False) for c in wanted if c not in found}

    async def erased(self, case: str) -> bool:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(client_keys.c.erased_at).where(client_keys.c.case_number == case))
            ).first()
        return row is not None and row.erased_at is not None

    async def rewrap(self, progress: Callable[[int, int], None] | None = None) -> Rewrapped:
        """Wrap every data key under the current master key (after a new one was put first);
        `progress(done, total)` is told after each batch. Keys wrapped by a master key this
        process lacks are left as they are and counted: give that key too, and run again."""
        if self.master is None:
            raise KeyUnavailable("no master key is configured (CASEWORK_PAYLOAD_KEY)")
        current = self.master.current_id
        async with self.engine.connect() as conn:
            stale = (
                (
                    await conn.execute(
                        select(client_keys.c.case_number)
                        .where(client_keys.c.master_id != current, client_keys.c.wrapped.is_not(None))
                        .order_by(client_keys.c.case_number)
                    )
                )
                .scalars()
                .all()
            )
        result = Rewrapped()
        for start in range(0, len(stale), 200):
            async with writing(self.engine) as conn:
                rows = await conn.execute(
                    select(client_keys).where(client_keys.c.case_number.in_(stale[start : start + 200]))
                )
                for row in rows:
                    if row.wrapped is None or row.master_id == current:
                        continue
                    context = row.case_number.encode()
                    try:
                        raw = await self.master.unwrap(row.master_id, row.wrapped, context)
                    except KeyUnavailable:
                        result.stranded[row.master_id] = result.stranded.get(row.master_id, 0) + 1
                        continue
                    master_id, wrapped = await self.master.wrap(raw, context)
                    await conn.execute(
                        update(client_keys)
                        .where(client_keys.c.case_number == row.case_number)
                        .values(master_id=master_id, wrapped=wrapped)
                    )
                    result.done += 1
            if progress is not None:
                progress(min(start + 200, len(stale)), len(stale))
        return result

    async def destroy(self, conn: Any, case: str, at: datetime) -> None:
        """Destroy the case's data key inside the caller's transaction (the erasure's)."""
        exists = (
            await conn.execute(select(client_keys.c.case_number).where(client_keys.c.case_number == case))
        ).first()
        if exists is None:  # a case recorded before keys existed: the row says it was erased
            await conn.execute(
                client_keys.insert().values(
                    case_number=case,
                    key_id="none",
                    master_id="none",
                    wrapped=None,
                    created_at=at,
                    erased_at=at,
                )
            )
        else:
            await conn.execute(
                update(client_keys)
                .where(client_keys.c.case_number == case)
                .values(wrapped=None, erased_at=at)
            )
        self._remember(case, None)


# What the record seals of an outbox message: whatever could say who the client
# is or what they live through. The rest of each row (stage, dates, kinds, statuses) is in clear.
SEALED_MESSAGE_FIELDS = ("body", "payload", "attachment")


def sealed_message(row: dict[str, Any], sealer: Sealer) -> dict[str, Any]:
    """An outbox row as the record keeps it: its body, structured payload, invitation and (when
    it is the client's) address sealed; kind, subject (written to hold no personal data),
    recipient role and status in clear."""
    sealed = {name: sealer.value(row.get(name), f"outbox.{name}") for name in SEALED_MESSAGE_FIELDS}
    if row["recipient_role"] == "client":
        sealed["recipient"] = sealer.text(row["recipient"], "outbox.recipient")
    return row | sealed


def opened_message(row: dict[str, Any], opener: Opener) -> dict[str, Any]:
    """An outbox row with its sealed fields opened (raises ClientErased)."""
    opened = {name: opener.value(row.get(name), f"outbox.{name}") for name in SEALED_MESSAGE_FIELDS}
    opened["recipient"] = opener.text(row["recipient"], "outbox.recipient")
    opened["last_error"] = opener.text(row.get("last_error"), "outbox.last_error")
    return row | opened
