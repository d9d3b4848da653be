"""What each event asks to send: reminders, escalations, referral requests, invitations.

Rendered when the event is recorded, so the outbox keeps exactly what was sent.
Subjects never carry a client's personal data; a referral carries only what the
client consented to share (or what a supervisor's override allowed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from icalendar import Calendar
from icalendar import Event as CalendarEvent

from domain import commands as c
from domain.events import DeliveryFailing, Event, NoticeIssued
from domain.models import Case, Client, FollowUp, Referral, Role, SharedField

Row = dict[str, Any]


def messages_for(case: Case, event: Event, now: datetime, callback_url: str) -> list[Row]:
    ch = event.change
    base: Row = {
        "case_number": case.number,
        "event_seq": event.seq,
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "level": 0,
        "payload": None,
        "attachment": None,
    }
    if isinstance(ch, NoticeIssued):
        return [base | notice(case, ch)]
    if isinstance(ch, DeliveryFailing):
        return [base | failing_notice(case, ch)]
    if isinstance(ch, c.Refer):
        referral = next(r for r in case.referrals if r.id == f"R{event.seq}")
        return [base | referral_request(case, referral, callback_url)]
    if isinstance(ch, c.ScheduleFollowUp | c.RecordFollowUpOutcome) and (new := _scheduled_by(case, event)):
        return [base | row for row in invitations(case, new, now)]
    return []


def notice(case: Case, ch: NoticeIssued) -> Row:
    if ch.kind == "reminder":
        subject = f"Case {case.number}: {ch.obligation} due {ch.due:%Y-%m-%d %H:%M} UTC"
    else:
        subject = f"Case {case.number}: {ch.obligation} overdue (escalation level {ch.level})"
    body = (
        f"{subject}\n\nThe {ch.obligation} for case {case.number} (program {case.program}) "
        f"is due {ch.due.isoformat()}.\nYou are notified as {ch.notify.value}.\n"
    )
    return {
        "idempotency_key": f"{case.number}:{ch.key}",
        "kind": ch.kind,
        "level": ch.level,
        "recipient": ch.recipient,
        "recipient_role": ch.notify.value,
        "subject": subject,
        "body": body,
    }


FAILING_NOTICE = "delivery_failing"


def failing_notice(case: Case, ch: DeliveryFailing) -> Row:
    """The case manager learns, once per message, that a delivery keeps failing (it is still
    retried for up to three days; the case shows it until it is delivered or given up)."""
    failing = ch.failing
    subject = f"Case {case.number}: delivery to {failing.to} failing"
    body = (
        f"{subject}\n\nThe {failing.kind} for case {case.number} (program {case.program}): "
        f"{failing.describe()}.\nCasework keeps trying for up to three days; you may want to "
        "reach the recipient another way.\n"
    )
    return {
        "idempotency_key": f"{case.number}:failing:{failing.key}",
        "kind": FAILING_NOTICE,
        "recipient": case.manager,
        "recipient_role": "case_manager",
        "subject": subject,
        "body": body,
    }


def shown_recipient(row: Row) -> str:
    """Who a message goes to, as the case's views may say it: never a client's address."""
    return "the client" if row["recipient_role"] == "client" else str(row["recipient"])


def shared_client_data(client: Client, case: Case, shared: frozenset[SharedField]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if SharedField.NAME in shared:
        data["name"] = client.display_name
    if SharedField.CONTACT in shared:
        data["phone"], data["email"] = client.phone, str(client.email) if client.email else None
    if SharedField.BIRTH_DATE in shared and client.birth_date:
        data["birth_date"] = client.birth_date.isoformat()
    if SharedField.ADDRESS in shared:
        data["address"] = client.address
    if SharedField.NEEDS in shared and case.assessment:
        data["needs"] = {n.domain.value: n.severity for n in case.assessment.needs}
        data["risk"] = case.assessment.risk.value
    return data


def referral_request(case: Case, referral: Referral, callback_url: str) -> Row:
    shared = shared_client_data(case.client, case, referral.shared)
    payload = {
        "type": "referral_request",
        "case": case.number,
        "referral": referral.id,
        "service": referral.service.value,
        "reason": referral.reason,
        "referred_by": referral.requested_by.id,
        "respond_within_hours": _hours(referral.respond_within),
        "answer_to": callback_url,
        "client": shared,
    }
    subject = f"Referral request {case.number}/{referral.id}: {referral.service.value}"
    lines = [
        f"Case {case.number} (program {case.program}) refers a client to you for {referral.service.value}.",
        f"Reason: {referral.reason}",
        "",
    ]
    lines += [f"{k}: {v}" for k, v in shared.items()] or ["(no client details shared)"]
    lines += [
        "",
        f"Answer (accept, decline, completed, no-show) at {callback_url}",
        f"quoting case {case.number} and referral {referral.id}.",
    ]
    return {
        "idempotency_key": f"{case.number}:referral:{referral.id}",
        "kind": "referral_request",
        "recipient": referral.provider,
        "recipient_role": Role.PROVIDER.value,
        "subject": subject,
        "body": "\n".join(lines),
        "payload": payload,
    }


def _scheduled_by(case: Case, event: Event) -> FollowUp | None:
    return next((f for f in case.follow_ups if f.id == f"F{event.seq}"), None)


def invitations(case: Case, follow_up: FollowUp, now: datetime) -> list[Row]:
    what = follow_up.kind.value.replace("_", " ")
    ics = calendar_invitation(case, follow_up, now)
    rows = [
        {
            "idempotency_key": f"{case.number}:invitation:{follow_up.id}:manager",
            "kind": "invitation",
            "recipient": case.manager,
            "recipient_role": Role.CASE_MANAGER.value,
            "subject": f"Case {case.number}: {what} on {follow_up.due_at:%Y-%m-%d %H:%M} UTC",
            "body": f"A {what} for case {case.number} is scheduled for {follow_up.due_at.isoformat()}.\n"
            f"{follow_up.summary}\n",
            "attachment": ics,
        }
    ]
    consented = case.consent is not None and SharedField.CONTACT in case.consent.share
    if follow_up.invite_client and consented and case.client.email:
        rows.append(
            {
                "idempotency_key": f"{case.number}:invitation:{follow_up.id}:client",
                "kind": "invitation",
                "recipient": str(case.client.email),
                "recipient_role": "client",
                "subject": f"Your {what} on {follow_up.due_at:%d %B %Y at %H:%M} UTC",
                "body": f"Dear {case.client.given_name},\n\nyour {what} is booked for "
                f"{follow_up.due_at:%d %B %Y at %H:%M} UTC.\n",
                "attachment": ics,
            }
        )
    return rows


def calendar_invitation(case: Case, follow_up: FollowUp, now: datetime) -> str:
    cal = Calendar()
    cal.add("prodid", "-//casework//follow-ups//EN")
    cal.add("version", "2.0")
    cal.add("method", "REQUEST")
    entry = CalendarEvent()
    entry.add("uid", f"{case.number}-{follow_up.id}@casework")
    entry.add("dtstamp", now)
    entry.add("dtstart", follow_up.due_at)
    entry.add("dtend", follow_up.due_at + timedelta(hours=1))
    entry.add("summary", f"Case {case.number}: {follow_up.kind.value.replace('_', ' ')}")
    if follow_up.provider:
        entry.add("location", follow_up.provider)
    cal.add_component(entry)
    return str(cal.to_ical().decode())


def _hours(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds() / 3600
