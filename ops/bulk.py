"""Bulk operations: reassign a caseload, import cases from CSV. Both report progress
and are safe to run again: a reassignment skips cases already moved, an import opens
each intake reference once."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from domain.commands import OpenCase, Transfer
from domain.errors import explain
from domain.models import Actor, Client
from ops.facade import CaseError, CaseOps, ListFilter

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class Outcome:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (row or case, why)


async def reassign_caseload(
    ops: CaseOps,
    actor: Actor,
    from_manager: str,
    to_manager: str,
    reason: str,
    progress: Progress | None = None,
) -> Outcome:
    """Transfer every open case of `from_manager` to `to_manager` (a supervisor's command)."""
    numbers = [row.number for row in await ops.list_cases(ListFilter(manager=from_manager), limit=100_000)]
    outcome = Outcome()
    for i, number in enumerate(numbers, start=1):
        try:
            await ops.act(number, Transfer(actor=actor, to_manager=to_manager, reason=reason))
            outcome.done.append(number)
        except CaseError as exc:
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


def opening_from_row(row: dict[str, str], actor: Actor) -> OpenCase:
    value = {k: v.strip() for k, v in row.items() if v is not None and v.strip()}
    if "intake_reference" not in value:
        raise ValueError("intake_reference: required, so that importing again opens nothing twice")
    client = Client.model_validate(
        {
            k: value[k]
            for k in ("given_name", "family_name", "birth_date", "phone", "email", "address")
            if k in value
        }
    )
    body: dict[str, Any] = {
        "actor": actor,
        "number": "X-IMPORT",
        "program": value.get("program", "general"),
        "client": client,
        "manager": value.get("manager", actor.id),
        "supervisor": value.get("supervisor"),
        "intake_reference": value["intake_reference"],
        "note": value.get("note", ""),
        "request_id": uuid.uuid4().hex,
    }
    if "risk" in value:
        body["risk"] = value["risk"]
    return OpenCase.model_validate(body)


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return explain(exc.errors(), whole="row")
    return str(getattr(exc, "message", exc))


async def import_cases(ops: CaseOps, actor: Actor, path: Path, progress: Progress | None = None) -> Outcome:
    """Open a case per valid row; report bad rows by number (the header is row 1)."""
    rows = read_rows(path)
    outcome = Outcome()
    for i, row in enumerate(rows, start=2):
        try:
            command = opening_from_row(row, actor)
            view = await ops.open_case(command)
            if view.case.opening_request == command.request_id:
                outcome.done.append(view.case.number)
            else:
                outcome.skipped.append(view.case.number)
        except (ValueError, CaseError) as exc:
            outcome.failed.append((f"row {i}", _why(exc)))
        if progress:
            progress(i - 1, len(rows))
    return outcome
