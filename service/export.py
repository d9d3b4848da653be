"""A subject access export: everything the SQL record holds about the client of one case.

Read from the record alone, so it works after Temporal has forgotten the case. The export is
a header (the client, the case, its assessment, plan and consent as last recorded) and
sections of rows (events, notes, consent history, referrals with what each provider received,
follow-ups with their invitations, every message with its delivery attempts, the access log),
each read a page at a time and written out as it is read (`json_chunks`, `html_chunks`): memory
holds one page, whatever the case's age.

The export is a *cut* of the record as it was when it began: rows written afterwards (a later
event, message or read) are left out, so a long download never shows half of a later change.
Pages are short reads, never one long transaction: on SQLite a reader held open for a slow
download would hold up the worker's recording.

Casework has no identity for a client across cases (each case holds its own `Client`), so an
export covers the case named. Matching other cases by name and birth date could join two people
and send one person's file to another, the worst way a subject access request can go wrong:
whoever answers the request finds the client's other cases and exports each.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Column, Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.models import Actor
from service.facade import NOTED, event_from_row
from store.keys import KeyRing, Opener, opened_message
from store.tables import (
    case_events,
    case_follow_ups,
    case_referrals,
    cases,
    delivery_attempts,
    outbox,
    record_access,
)

FORMAT = "casework-subject-access/1"
PAGE = 200  # rows per read: a page of messages with their bodies stays well under a few MB

# A referral email's answer link answers for the provider until its deadline: whoever holds
# the export must not be able to use it. What the provider was asked is in the rest of the body.
ANSWER_LINK = re.compile(r"(/answer/)[^\s\"']+")
LINK_WITHHELD = r"\1(link withheld from this export)"

Row = dict[str, Any]


@dataclass(frozen=True)
class Section:
    """Rows of one kind, read a page at a time; `columns` are what the HTML shows of each."""

    name: str
    title: str
    columns: tuple[tuple[str, str], ...]  # (key in the row, heading)
    rows: Callable[[], AsyncIterator[Row]]


@dataclass(frozen=True)
class Export:
    header: Row
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class Cut:
    """What the export covers: the record up to these rows, as it was when the export began."""

    number: str
    opener: Opener  # the client's data key: the record's sealed fields open with it
    last_seq: int
    last_message: int
    last_access: int


class SubjectAccess:
    """Builds exports from the SQL record."""

    def __init__(self, record: AsyncEngine, keys: KeyRing | None = None, page: int = PAGE) -> None:
        self.record, self.page = record, page
        self.keys = keys if keys is not None else KeyRing(record, None)

    async def export(self, number: str, by: Actor, now: datetime) -> Export | None:
        """The export of case `number`'s client as the record has it now, or None if the record
        has no such case. Rows are read as the sections are consumed. Raises ClientErased if the
        client was erased: nothing about them is left to export."""
        async with self.record.connect() as conn:
            found = (await conn.execute(select(cases).where(cases.c.number == number))).one_or_none()
            if found is None:
                return None
            last_message = await conn.scalar(
                select(func.max(outbox.c.id)).where(outbox.c.case_number == number)
            )
            last_access = await conn.scalar(
                select(func.max(record_access.c.id)).where(record_access.c.case_number == number)
            )
        opener = await self.keys.opener(number)
        cut = Cut(number, opener, found.last_seq, last_message or 0, last_access or 0)
        state = opener.value(found.state, "cases.state")  # ClientErased: nothing to export
        return Export(header(found._mapping, state, by, now), self._sections(cut))

    def _sections(self, cut: Cut) -> tuple[Section, ...]:
        return (
            Section(
                "events",
                "Everything that happened on the case",
                (
                    ("seq", "#"),
                    ("at", "when"),
                    ("action", "what"),
                    ("by", "by"),
                    ("stage", "stage"),
                    ("details", "details"),
                ),
                lambda: self._events(cut),
            ),
            Section(
                "notes",
                "What staff wrote",
                (("seq", "#"), ("at", "when"), ("by", "by"), ("text", "text")),
                lambda: self._notes(cut),
            ),
            Section(
                "consent_history",
                "Consent to share, as recorded",
                (
                    ("seq", "#"),
                    ("at", "when"),
                    ("by", "recorded by"),
                    ("share", "may share"),
                    ("note", "note"),
                ),
                lambda: self._consent(cut),
            ),
            Section(
                "referrals",
                "Referrals, and exactly what each provider received",
                (
                    ("id", "referral"),
                    ("provider", "provider"),
                    ("service", "service"),
                    ("status", "status"),
                    ("requested_at", "requested"),
                    ("reason", "reason"),
                    ("shared_with_provider", "what the provider received"),
                    ("request", "request"),
                    ("cancellation", "cancellation"),
                ),
                lambda: self._referrals(cut),
            ),
            Section(
                "follow_ups",
                "Follow-ups and invitations",
                (
                    ("id", "follow-up"),
                    ("kind", "kind"),
                    ("due_at", "due"),
                    ("status", "status"),
                    ("done_at", "done"),
                    ("invitations", "invitations"),
                ),
                lambda: self._follow_ups(cut),
            ),
            Section(
                "messages",
                "Messages sent about the case: to whom, when, and what happened",
                (
                    ("id", "#"),
                    ("created_at", "written"),
                    ("kind", "kind"),
                    ("to", "to"),
                    ("subject", "subject"),
                    ("status", "outcome"),
                    ("delivered_at", "delivered"),
                    ("attempts", "attempts"),
                ),
                lambda: self._messages(cut),
            ),
            Section(
                "access_log",
                "Who read the case, and when",
                (("at", "when"), ("by", "who"), ("what", "what they read")),
                lambda: self._access_log(cut),
            ),
        )

    async def _pages(self, query: Select[Any], key: Column[Any], *, start: Any) -> AsyncIterator[Any]:
        """Rows of `query` in order of the unique `key`, a page per short read (keyset paging)."""
        after = start
        while True:
            async with self.record.connect() as conn:
                rows = list(await conn.execute(query.where(key > after).order_by(key).limit(self.page)))
            for row in rows:
                yield row
            if len(rows) < self.page:
                return
            after = getattr(rows[-1], key.key)

    def _case_events(self, cut: Cut, *actions: str) -> Select[Any]:
        query = select(case_events).where(
            case_events.c.case_number == cut.number, case_events.c.seq <= cut.last_seq
        )
        return query.where(case_events.c.action.in_(actions)) if actions else query

    async def _events(self, cut: Cut) -> AsyncIterator[Row]:
        async for row in self._pages(self._case_events(cut), case_events.c.seq, start=0):
            change = dict(cut.opener.value(row.change, "case_events.change"))
            yield {
                "seq": row.seq,
                "at": utc(row.at),
                "action": row.action,
                "by": person(row.actor_id, row.actor_role),
                "stage": row.stage_after
                if row.stage_before in (None, row.stage_after)
                else f"{row.stage_before} → {row.stage_after}",
                "details": {k: v for k, v in change.items() if k not in ("action", "actor")},
            }

    async def _notes(self, cut: Cut) -> AsyncIterator[Row]:
        async for row in self._pages(self._case_events(cut, *NOTED), case_events.c.seq, start=0):
            note = event_from_row(row._mapping, cut.opener).note()
            if note is not None:
                yield {"seq": row.seq, "at": utc(note.at), "by": str(note.author), "text": note.text}

    async def _consent(self, cut: Cut) -> AsyncIterator[Row]:
        async for row in self._pages(self._case_events(cut, "record_consent"), case_events.c.seq, start=0):
            change = cut.opener.value(row.change, "case_events.change")
            yield {
                "seq": row.seq,
                "at": utc(row.at),
                "by": person(row.actor_id, row.actor_role),
                "share": sorted(change.get("share", [])),
                "note": change.get("note", ""),
            }

    async def _referrals(self, cut: Cut) -> AsyncIterator[Row]:
        query = select(case_referrals).where(case_referrals.c.case_number == cut.number)
        rows = self._pages(query, case_referrals.c.referral_id, start="")
        async for row in self._completed(rows, lambda page: self._with_requests(cut, page)):
            yield row

    async def _completed(
        self, rows: AsyncIterator[Any], complete: Callable[[list[Any]], Awaitable[list[Row]]]
    ) -> AsyncIterator[Row]:
        """`rows` completed a page at a time (one read for the messages of a page of rows)."""
        page: list[Any] = []
        async for row in rows:
            page.append(row)
            if len(page) == self.page:
                for done in await complete(page):
                    yield done
                page = []
        if page:
            for done in await complete(page):
                yield done

    async def _with_requests(self, cut: Cut, referrals: list[Any]) -> list[Row]:
        """Referral rows with the request each provider was sent (the outbox's payload: exactly
        the client data it carried) and the cancellation, if one was sent."""
        keys = {
            f"{cut.number}:{kind}:{r.referral_id}"
            for r in referrals
            for kind in ("referral", "referral-cancel")
        }
        sent = await self._messages_by_key(cut, keys)
        found = []
        for r in referrals:
            request = sent.get(f"{cut.number}:referral:{r.referral_id}")
            cancel = sent.get(f"{cut.number}:referral-cancel:{r.referral_id}")
            payload = (request.payload if request is not None else None) or {}
            found.append(
                {
                    "id": r.referral_id,
                    "provider": r.provider,
                    "service": r.service,
                    "status": r.status,
                    "requested_at": utc(r.requested_at),
                    "answered_at": utc(r.answered_at),
                    "reason": payload.get("reason", ""),
                    "referred_by": payload.get("referred_by", ""),
                    "shared_with_provider": payload.get("client", {}),
                    "request": delivery(request),
                    "cancellation": delivery(cancel),
                }
            )
        return found

    async def _follow_ups(self, cut: Cut) -> AsyncIterator[Row]:
        query = select(case_follow_ups).where(case_follow_ups.c.case_number == cut.number)
        rows = self._pages(query, case_follow_ups.c.follow_up_id, start="")
        async for row in self._completed(rows, lambda page: self._with_invitations(cut, page)):
            yield row

    async def _with_invitations(self, cut: Cut, follow_ups: list[Any]) -> list[Row]:
        """Follow-up rows with the invitations (and calendar cancellations) each sent."""
        keys = {
            f"{cut.number}:{kind}:{f.follow_up_id}:{who}": f.follow_up_id
            for f in follow_ups
            for kind in ("invitation", "invitation-cancel")
            for who in ("manager", "client")
        }
        sent = await self._messages_by_key(cut, keys)
        return [
            {
                "id": f.follow_up_id,
                "kind": f.kind,
                "due_at": utc(f.due_at),
                "status": f.status,
                "done_at": utc(f.done_at),
                "invitations": [
                    {"to": m.recipient, "kind": m.kind} | delivery(m)
                    for key, m in sorted(sent.items())
                    if keys[key] == f.follow_up_id
                ],
            }
            for f in follow_ups
        ]

    async def _messages_by_key(self, cut: Cut, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        if not keys:
            return {}
        async with self.record.connect() as conn:
            rows = await conn.execute(
                select(outbox).where(outbox.c.idempotency_key.in_(keys), outbox.c.id <= cut.last_message)
            )
            return {row.idempotency_key: opened(row, cut.opener) for row in rows}

    async def _messages(self, cut: Cut) -> AsyncIterator[Row]:
        query = select(outbox).where(outbox.c.case_number == cut.number, outbox.c.id <= cut.last_message)
        pages = self._pages(query, outbox.c.id, start=0)
        async for row in self._completed(pages, lambda page: self._with_attempts(cut.opener, page)):
            yield row

    async def _with_attempts(self, opener: Opener, sealed: list[Any]) -> list[Row]:
        """Messages with every attempt to deliver each (one read per page of messages)."""
        if not sealed:
            return []
        messages = [opened(m, opener) for m in sealed]
        async with self.record.connect() as conn:
            rows = await conn.execute(
                select(delivery_attempts)
                .where(delivery_attempts.c.idempotency_key.in_([m.idempotency_key for m in messages]))
                .order_by(delivery_attempts.c.id)
            )
            attempts: dict[str, list[Row]] = {}
            for a in rows:
                attempts.setdefault(a.idempotency_key, []).append(
                    {
                        "attempt": a.attempt,
                        "channel": a.channel,
                        "address": opener.text(a.address, "delivery_attempts.address"),
                        "started_at": utc(a.started_at),
                        "finished_at": utc(a.finished_at),
                        "outcome": a.outcome,
                        "detail": opener.text(a.detail, "delivery_attempts.detail"),
                    }
                )
        return [
            {
                "id": m.id,
                "created_at": utc(m.created_at),
                "kind": m.kind,
                # the client's own address too: it is the client's data, and the client asks
                "to": m.recipient,
                "recipient_role": m.recipient_role,
                "subject": m.subject,
                "body": ANSWER_LINK.sub(LINK_WITHHELD, m.body),
                "status": m.status,
                "delivered_at": utc(m.delivered_at),
                "last_error": m.last_error,
                "attempts": attempts.get(m.idempotency_key, []),
            }
            for m in messages
        ]

    async def _access_log(self, cut: Cut) -> AsyncIterator[Row]:
        query = select(record_access).where(
            record_access.c.case_number == cut.number, record_access.c.id <= cut.last_access
        )
        async for row in self._pages(query, record_access.c.id, start=0):
            yield {"at": utc(row.at), "by": person(row.actor_id, row.actor_role), "what": row.what}


def opened(row: Any, opener: Opener) -> SimpleNamespace:
    """An outbox row with its sealed fields opened, read as the row was (attributes)."""
    return SimpleNamespace(**opened_message(dict(row._mapping), opener))


def header(row: Any, state: dict[str, Any], by: Actor, now: datetime) -> Row:
    """The client and the case as last recorded (the live case: assessment, plan, consent)."""
    consent = state.get("consent")
    case_fields = (
        "program", "manager", "supervisor", "risk", "stage", "opened_at", "closed_at", "outcome",
        "close_reason", "reopen_count", "intake_reference", "holds",
    )  # fmt: skip
    return {
        "format": FORMAT,
        "exported_at": utc(now),
        "exported_by": str(by),
        "case_number": row["number"],
        "covers_events_to": row["last_seq"],
        "client": state["client"],
        "case": {k: state.get(k) for k in case_fields},
        "assessment": state.get("assessment"),
        "plan": state.get("plan"),
        "consent": consent and consent | {"share": sorted(consent["share"])},  # a set: in one order
    }


def delivery(message: Any) -> Row:
    if message is None:
        return {}
    return {"status": message.status, "delivered_at": utc(message.delivered_at), "to": message.recipient}


def person(actor_id: str, role: str) -> str:
    return f"{actor_id} ({role})"


def utc(at: datetime | None) -> str | None:
    """A time as ISO 8601 in UTC (SQLite hands times back without their zone)."""
    if at is None:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


# --- writing it out ---------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


async def json_chunks(export: Export) -> AsyncIterator[str]:
    """The export as one JSON object: the header's members, then each section as an array."""
    yield "{" + _json(export.header)[1:-1]
    for section in export.sections:
        yield f",\n{_json(section.name)}: ["
        first = True
        async for row in section.rows():
            yield ("\n" if first else ",\n") + _json(row)
            first = False
        yield "]"
    yield "}\n"


STYLE = """
body { font: 11pt/1.4 system-ui, sans-serif; margin: 2em; color: #111; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #999; }
table { border-collapse: collapse; width: 100%; font-size: 9.5pt; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.4em; text-align: left; vertical-align: top; }
th { background: #eee; } tr { break-inside: avoid; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: 600; } dd { margin: 0; white-space: pre-wrap; }
td { white-space: pre-wrap; overflow-wrap: anywhere; }
.empty { color: #666; font-style: italic; }
"""


def as_text(value: Any) -> str:
    """A value as a person reads it in a table cell: nested values as `key: value` lines."""
    if value is None or value == "" or value == [] or value == {}:
        return ""
    if isinstance(value, dict):
        return "\n".join(f"{k}: {as_text(v)}" for k, v in value.items() if as_text(v))
    if isinstance(value, list):
        return "; ".join(as_text(v) for v in value)
    return str(value)


def _cell(value: Any) -> str:
    return html.escape(as_text(value))


def _facts(facts: dict[str, Any]) -> str:
    items = "".join(
        f"<dt>{html.escape(k.replace('_', ' '))}</dt><dd>{_cell(v)}</dd>" for k, v in facts.items()
    )
    return f"<dl>{items}</dl>"


async def html_chunks(export: Export) -> AsyncIterator[str]:
    """The export as a self-contained, printable HTML document: no scripts, no outside files."""
    head = export.header
    client = head["client"]
    name = f"{client.get('given_name', '')} {client.get('family_name', '')}".strip()
    yield (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Data held about {html.escape(name)} (case {html.escape(head['case_number'])})</title>"
        f"<style>{STYLE}</style></head><body>\n"
        f"<h1>Data held about {html.escape(name)}</h1>\n"
        f"<p>Case {html.escape(head['case_number'])}, exported {html.escape(head['exported_at'])} by "
        f"{html.escape(head['exported_by'])}: everything casework's record held about this case up to "
        f"event #{head['covers_events_to']}.</p>\n"
        f"<h2>Client</h2>{_facts(client)}\n<h2>Case</h2>{_facts(head['case'])}\n"
        f"<h2>Assessment</h2>{_facts(head['assessment'] or {})}\n"
        f"<h2>Plan</h2>{_facts(head['plan'] or {})}\n<h2>Consent now</h2>{_facts(head['consent'] or {})}\n"
    )
    for section in export.sections:
        headings = "".join(f"<th>{html.escape(label)}</th>" for _, label in section.columns)
        yield f"<h2>{html.escape(section.title)}</h2>\n<table><thead><tr>{headings}</tr></thead><tbody>\n"
        empty = True
        async for row in section.rows():
            empty = False
            yield (
                "<tr>" + "".join(f"<td>{_cell(row.get(key))}</td>" for key, _ in section.columns) + "</tr>\n"
            )
        if empty:
            yield f'<tr><td class="empty" colspan="{len(section.columns)}">none</td></tr>\n'
        yield "</tbody></table>\n"
    yield "</body></html>\n"
