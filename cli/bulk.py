"""Bulk work from the terminal, through the API: reassign a caseload, import cases from CSV.
Both report progress and are safe to run again: a reassignment skips cases already moved
(and repeats nothing: each transfer has a stable idempotency key), an import opens each
intake reference once."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.apiclient import Api, ApiError

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (row or case, why)


def open_cases_of(api: Api, manager: str) -> list[str]:
    numbers: list[str] = []
    token = None
    while True:
        page = api.get("/cases", manager=manager, page_size=100, page_token=token)
        numbers += [row["number"] for row in page["items"]]
        token = page["next_page_token"]
        if token is None:
            return numbers


def reassign_caseload(
    api: Api, from_manager: str, to_manager: str, reason: str, progress: Progress | None = None
) -> Outcome:
    """Transfer every open case of `from_manager` that the caller may see to `to_manager`.
    Whether the caller may transfer is the domain's rule, asked case by case by the API."""
    numbers = open_cases_of(api, from_manager)
    outcome = Outcome()
    for i, number in enumerate(numbers, start=1):
        key = (
            "reassign-"
            + hashlib.sha256(f"{number}|{from_manager}|{to_manager}|{reason}".encode()).hexdigest()[:40]
        )
        try:
            _, receipt = api.post(
                f"/cases/{number}/transfer", {"to_manager": to_manager, "reason": reason}, key=key
            )
            (outcome.skipped if receipt.get("repeated") else outcome.done).append(number)
        except ApiError as exc:
            if exc.kind == "unreachable":
                raise
            if "already managed by" in exc.message:
                outcome.skipped.append(number)
            else:
                outcome.failed.append((number, exc.message))
        if progress:
            progress(i, len(numbers))
    return outcome


IMPORT_COLUMNS = (
    "intake_reference",
    "program",
    "given_name",
    "family_name",
    "birth_date",
    "phone",
    "email",
    "address",
    "manager",
    "supervisor",
    "risk",
    "note",
)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"intake_reference", "given_name", "family_name"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {', '.join(sorted(missing))}")
        unknown = set(reader.fieldnames or []) - set(IMPORT_COLUMNS)
        if unknown:
            raise ValueError(
                f"{path}: unknown columns {', '.join(sorted(unknown))} (known: {', '.join(IMPORT_COLUMNS)})"
            )
        return list(reader)


CLIENT_COLUMNS = ("given_name", "family_name", "birth_date", "phone", "email", "address")


def opening_from_row(row: dict[str, str]) -> dict[str, Any]:
    """The body of `POST /cases` for one row; the API validates it like any other."""
    value = {k: v.strip() for k, v in row.items() if v is not None and v.strip()}
    if "intake_reference" not in value:
        raise ValueError("intake_reference: required, so that importing again opens nothing twice")
    body: dict[str, Any] = {
        "program": value.get("program", "general"),
        "client": {k: value[k] for k in CLIENT_COLUMNS if k in value},
        "intake_reference": value["intake_reference"],
    }
    body |= {k: value[k] for k in ("manager", "supervisor", "risk", "note") if k in value}
    return body


def import_cases(api: Api, rows: list[dict[str, str]], progress: Progress | None = None) -> Outcome:
    """Open a case per valid row; report bad rows by number (the header is row 1)."""
    outcome = Outcome()
    for i, row in enumerate(rows, start=2):
        try:
            status, view = api.post("/cases", opening_from_row(row))
            number = view["case"]["number"]
            (outcome.done if status == 201 else outcome.skipped).append(number)
        except ApiError as exc:
            if exc.kind == "unreachable":
                raise
            outcome.failed.append((f"row {i}", exc.message))
        except ValueError as exc:
            outcome.failed.append((f"row {i}", str(exc)))
        if progress:
            progress(i - 1, len(rows))
    return outcome
