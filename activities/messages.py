"""What each event asks to send: reminders, escalations, referral requests and their
cancellations, invitations and their calendar cancellations.

Rendered when the event is recorded, so the outbox keeps exactly what was sent.
Subjects never carry a client's personal data; a referral carries only what the
client consented to share (or what a supervisor's override allowed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from icalendar import Calendar
from icalendar import Event as CalendarEvent

from activities.answer_links import AnswerLinks, answer_link_lines
from domain import commands as c
from domain.case import ENDED_AS
from domain.events import DeliveryFailing, Event, NoticeIssued
from domain.lifecycle import REFERRAL_ANSWERS, why_client_cannot_be_invited
from domain.models import (
    Case,
    Client,
    FollowUp,
    FollowUpStatus,
    Referral,
    ReferralAnswer,
    ReferralEnded,
    ReferralStatus,
    Role,
    SharedField,
)

Row = dict[str, Any]


def messages_for(
    case: Case, event: Event, now: datetime, callback_url: str, links: AnswerLinks | None = None
) -> list[Row]:
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
    rows = [
        base | referral_cancellation(case, ended, event) for ended in event.revoked if ended.tell_provider
    ]
    if isinstance(ch, c.Refer):
        referral = next(r for r in case.referrals if r.id == f"R{event.seq}")
        rows.append(base | referral_request(case, referral, callback_url, links))
    if isinstance(ch, c.ScheduleFollowUp | c.RecordFollowUpOutcome) and (new := _scheduled_by(case, event)):
        rows += [base | row for row in invitations(case, new, now)]
    return rows


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


# What each answer word means to the provider who sends it (the words are ReferralAnswer's).
ANSWER_MEANING: dict[ReferralAnswer, str] = {
    ReferralAnswer.ACCEPTED: "you take the client on",
    ReferralAnswer.DECLINED: "you will not (say why in `reason`)",
    ReferralAnswer.COMPLETED: "the service was given",
    ReferralAnswer.NO_SHOW: "the client did not come",
}
SEVERITY = {0: "none", 1: "low", 2: "moderate", 3: "severe"}  # as Need.severity describes them


def answers_from(status: ReferralStatus) -> list[ReferralAnswer]:
    """The answer words the callback takes for a referral in `status` (domain.lifecycle's table)."""
    return [answer for answer in ReferralAnswer if status in REFERRAL_ANSWERS[answer]]


def answer_due(referral: Referral) -> datetime | None:
    """By when the provider is asked to answer (None: the referral predates stating it)."""
    return None if referral.respond_within is None else referral.requested_at + referral.respond_within


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
    """What the referral carries of the client: only the fields shared, and only those known."""
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
        data["needs"] = [
            {"domain": n.domain, "severity": n.severity, "level": SEVERITY.get(n.severity, "")}
            for n in case.assessment.needs
        ]
        data["risk"] = case.assessment.risk.value
    return {k: v for k, v in data.items() if v is not None}


def client_lines(shared: dict[str, Any]) -> list[str]:
    """The shared data as a person reads it: 'Needs: housing (severe), safety (moderate)'."""
    if not shared:
        return ["(no client details shared)"]
    lines = []
    for field, value in shared.items():
        if field == "needs":
            value = ", ".join(f"{_words(n['domain'])} ({n['level']})" for n in value)
        lines.append(f"  {_words(field).capitalize()}: {value}")
    return ["What the client agreed to share:", *lines]


def referral_request(
    case: Case, referral: Referral, callback_url: str, links: AnswerLinks | None = None
) -> Row:
    shared = shared_client_data(case.client, case, referral.shared)
    due, now, later = (
        answer_due(referral),
        answers_from(ReferralStatus.SENT),
        answers_from(ReferralStatus.ACCEPTED),
    )
    payload = {
        "type": "referral_request",
        "case": case.number,
        "referral": referral.id,
        "service": referral.service,
        "reason": referral.reason,
        "referred_by": referral.requested_by.id,
        "respond_within_hours": _hours(referral.respond_within),
        "answer_by": due.isoformat() if due else None,
        "answers": [a.value for a in now],
        "answers_once_accepted": [a.value for a in later],
        "answer_to": callback_url,
        "client": shared,
    }
    subject = f"Referral request {case.number}/{referral.id}: {_words(referral.service)}"
    return {
        "idempotency_key": f"{case.number}:referral:{referral.id}",
        "kind": "referral_request",
        "recipient": referral.provider,
        "recipient_role": Role.PROVIDER.value,
        "subject": subject,
        "body": "\n\n".join(referral_paragraphs(case, referral, shared, callback_url, links)) + "\n",
        "payload": payload,
    }


def referral_paragraphs(
    case: Case,
    referral: Referral,
    shared: dict[str, Any],
    callback_url: str,
    links: AnswerLinks | None = None,
) -> list[str]:
    """The referral email, a paragraph each: add one here to say more (the words the callback
    takes come from ReferralAnswer, so the email never asks for a word it refuses)."""
    due = answer_due(referral)
    by = f"by {due:%A %d %B %Y, %H:%M} UTC" if due else "as soon as you can"
    return [
        f"Case {case.number} (program {case.program}) refers a client to you for "
        f"{_words(referral.service)}.\nReason: {referral.reason}",
        "\n".join(client_lines(shared)),
        f"Please answer {by}, with one of these words as `answer`:\n"
        + "\n".join(_answer_line(a) for a in answers_from(ReferralStatus.SENT)),
        "Once you have accepted, answer again when it is done:\n"
        + "\n".join(_answer_line(a) for a in answers_from(ReferralStatus.ACCEPTED)),
        f"Answer at {callback_url} with case {case.number} and referral {referral.id}.",
        *(
            ["\n".join(line for line in link if line)]
            if (link := answer_link_lines(links, case, referral))
            else []
        ),
    ]


def _answer_line(answer: ReferralAnswer) -> str:
    return f"  {answer.value} - {ANSWER_MEANING.get(answer, '')}".rstrip(" -")


def referral_cancellation(case: Case, ended: ReferralEnded, event: Event) -> Row:
    """Telling a provider a referral has ended: no answer is needed, and the client's data it
    carried is to be disposed of. Nothing of the client: not even the staff's reason (free text)."""
    why = (
        "the case manager revoked it"
        if isinstance(event.change, c.RevokeReferral)
        else f"the case was {ENDED_AS.get(event.change.action, 'ended')}"
    )
    service = _words(ended.service)
    body = [
        f"Referral {ended.id} of case {case.number} ({service}) was cancelled on "
        f"{event.at:%A %d %B %Y, %H:%M} UTC: {why}.",
        "No answer is needed, and please do not act on the referral.",
        "Please delete the client's data you received with this referral, as your data-sharing "
        "agreement requires, unless you have since taken the client on directly.",
    ]
    return {
        "idempotency_key": f"{case.number}:referral-cancel:{ended.id}",
        "kind": "referral_cancellation",
        "recipient": ended.provider,
        "recipient_role": Role.PROVIDER.value,
        "subject": f"Referral cancelled {case.number}/{ended.id}: {service}",
        "body": "\n\n".join(body) + "\n",
        "payload": {
            "type": "referral_cancellation",
            "case": case.number,
            "referral": ended.id,
            "service": ended.service,
            "cancelled_at": event.at.isoformat(),
            "why": why,
            "answer_needed": False,
            "dispose_of_client_data": True,
        },
    }


def _words(value: str) -> str:
    return value.replace("_", " ")


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
    # the rule the command was checked by (runs from before it accepted follow-ups inviting
    # clients no invitation could reach: those invite only the manager, as they did)
    if follow_up.invite_client and why_client_cannot_be_invited(case) is None:
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


def invitation_keys(case: Case, follow_up_id: str) -> list[str]:
    """The keys of the invitations a follow-up may have sent (manager, and client if invited)."""
    return [f"{case.number}:invitation:{follow_up_id}:{who}" for who in ("manager", "client")]


def called_off(event: Event) -> list[str]:
    """The follow-ups whose invitations `event` calls off: those it cancelled (the case ended, or
    staff cancelled one), and the one it rescheduled (its new time has an invitation of its own)."""
    moved = (
        [event.change.follow_up_id]
        if isinstance(event.change, c.RecordFollowUpOutcome)
        and event.change.outcome is FollowUpStatus.RESCHEDULED
        else []
    )
    return [*event.cancelled, *moved]


def _why_called_off(event: Event) -> str:
    change = event.change
    if isinstance(change, c.RecordFollowUpOutcome) and change.rescheduled_to is not None:
        return f"it was moved to {change.rescheduled_to:%Y-%m-%d %H:%M} UTC (a new invitation is on its way)"
    return f"the case was {ENDED_AS.get(change.action, 'ended')}"


def calendar_cancellation(invitation: Row, event: Event, now: datetime) -> Row:
    """The iCalendar CANCEL of a sent invitation, to the same person: the same UID, SEQUENCE + 1,
    STATUS:CANCELLED, so their calendar removes the event (RFC 5546, 3.2.5)."""
    calendar = Calendar.from_ical(invitation["attachment"])
    calendar["method"] = "CANCEL"
    for entry in calendar.walk("VEVENT"):
        sequence = int(entry.get("sequence", 0)) + 1
        for name in ("sequence", "status", "dtstamp"):
            entry.pop(name, None)
        entry.add("sequence", sequence)
        entry.add("status", "CANCELLED")
        entry.add("dtstamp", now)
    why = _why_called_off(event)
    return {
        "idempotency_key": invitation["idempotency_key"].replace(":invitation:", ":invitation-cancel:", 1),
        "kind": "invitation_cancellation",
        "recipient": invitation["recipient"],
        "recipient_role": invitation["recipient_role"],
        "subject": f"Cancelled: {invitation['subject']}",
        "body": f"This is cancelled: {invitation['subject']}.\n"
        + ("" if invitation["recipient_role"] == "client" else f"Why: {why}.\n"),
        "attachment": calendar.to_ical().decode(),
    }


def _hours(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds() / 3600
