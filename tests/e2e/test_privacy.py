"""The privacy scan, on `casework dev` as installed: a client named with a marker found nowhere
else goes through a case (notes, consent, a referral, a visit she is invited to), and then the
marker is on disk only in the mail delivered to her and to the provider she consented to share
with. Not in Temporal's database, not in the record, not in the logs, not in any subject. Once
the case is withdrawn and a program lead erases her, nothing of her can be read any more."""

from __future__ import annotations

import email
import email.policy
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.processes import casework


def files_bytes(var: Path, *names: str) -> bytes:
    """Files under var/ as they are on disk, with their write-ahead logs (recent writes)."""
    paths = [var / n for n in names] + [var / f"{n}-wal" for n in names]
    return b"".join(p.read_bytes() for p in paths if p.exists())


def mail(stack: dict[str, str]) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted(Path(stack["MAIL"]).glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        found.append(message)
    return found


def text_of(message: email.message.EmailMessage) -> str:
    return "".join(str(part.get_content()) for part in message.walk() if not part.is_multipart())


def wait_for(condition: Any, what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within} s for {what}")
        time.sleep(0.2)


def test_a_clients_name_is_on_disk_only_where_she_consented_and_erasure_ends_even_that(
    stack: dict[str, str],
) -> None:
    name = "Qx" + uuid.uuid4().hex[:10]  # her family name: a marker no other test uses
    address = f"{name.lower()}@client.example.org"
    note = f"{name} stays with a cousin"
    api, var = stack["API"], Path(stack["CASEWORK_VAR_DIR"])
    alice = httpx.Client(base_url=api, headers={"Authorization": "Bearer dev-alice"}, timeout=30)
    client = {"given_name": "Rosa", "family_name": name, "email": address, "phone": "555-0199"}
    opened = alice.post("/cases", json={"client": client, "supervisor": "sam"})
    assert opened.status_code == 201, opened.text
    number = opened.json()["case"]["number"]
    visit = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()
    for action, body in (
        ("accept", {"note": note}),
        ("record-consent", {"share": ["name", "contact"], "note": "signed release"}),
        ("refer", {"provider": "shelter-north", "service": "housing", "reason": "a bed", "share": ["name"]}),
        ("schedule-follow-up", {"kind": "home_visit", "at": visit, "invite_client": True}),
        ("add-note", {"text": f"{name} prefers calls after 5pm"}),
    ):
        done = alice.post(f"/cases/{number}/{action}", json=body)
        assert done.status_code == 200, (action, done.text)

    def sent_to(*recipients: str) -> bool:
        to = {str(m["To"]) for m in mail(stack) if number in text_of(m) + str(m["Subject"])}
        return set(recipients) <= to

    wait_for(lambda: sent_to(address, "intake@shelter-north.example.org"), "the referral and invitation")

    # on disk: her name only in what she and the consented provider were sent
    assert name.encode() not in files_bytes(var, "temporal.db", "casework.db")
    assert name not in Path(stack["LOG"]).read_text() and address not in Path(stack["LOG"]).read_text()
    for message in mail(stack):
        assert name not in str(message["Subject"])
        if name in text_of(message):
            assert str(message["To"]) in (address, "intake@shelter-north.example.org"), message["To"]
    # and read through the door, for those who may see the case
    assert alice.get(f"/cases/{number}").json()["case"]["client"]["family_name"] == name

    # withdrawn, then erased by the program lead
    withdrawn = alice.post(f"/cases/{number}/withdraw", json={"reason": "the client asked to be forgotten"})
    assert withdrawn.status_code == 200, withdrawn.text
    lead = {**stack, "CASEWORK_API_KEY": "dev-lead", "CASEWORK_API_URL": api}
    why = "the client's request of 2026-11-26"
    erased = casework("erase-client", number, "--reason", why, "--yes", env=lead)
    assert erased.returncode == 0, erased.stderr
    shown = casework("show", number, env=lead)
    assert shown.returncode == 0 and "(erased)" in shown.stdout and name not in shown.stdout
    assert name not in alice.get(f"/cases/{number}/notes").text
    started = alice.get(f"/cases/{number}")
    assert started.json()["status"] == "erased"
    assert name.encode() not in files_bytes(var, "temporal.db", "casework.db")
    report = casework("report", env=lead)
    assert report.returncode == 0, report.stderr  # the statistics stay
