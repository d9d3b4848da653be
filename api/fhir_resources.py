"""Referrals in HL7 FHIR R4 (the SDOH Clinical Care "Gravity" pattern): each referral is a
`ServiceRequest` (what is asked, for whom) and a `Task` (the provider's work on it) whose
status the provider moves. This module maps casework's referral lifecycle to those resources
and back; every resource served is built and validated with `fhir.resources` (its R4B
package: R4B changed no element of Task, ServiceRequest, Patient, Bundle or OperationOutcome,
so what it validates is valid R4), and every resource received is parsed with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from domain.errors import Refusal
from domain.models import ReferralAnswer, ReferralStatus

FHIR_JSON = "application/fhir+json"
SERVICE_TYPE_SYSTEM = "urn:casework:service-type"
REFERRAL_SYSTEM = "urn:casework:referral"

# casework's referral status -> the Task status a provider sees. A referral still awaiting the
# provider is `requested` however its delivery went (the Task itself is a way to receive it);
# `businessStatus` says the rest. A test checks every status is here.
TASK_STATUS: dict[ReferralStatus, str] = {
    ReferralStatus.PENDING: "requested",
    ReferralStatus.SENT: "requested",
    ReferralStatus.EXPIRED: "requested",  # a late answer is still taken
    ReferralStatus.DELIVERY_FAILED: "requested",
    ReferralStatus.ACCEPTED: "accepted",
    ReferralStatus.DECLINED: "rejected",
    ReferralStatus.COMPLETED: "completed",
    ReferralStatus.NO_SHOW: "failed",  # accepted, but the client never came: the task failed
    ReferralStatus.REVOKED: "cancelled",  # we withdrew it
}
BUSINESS_STATUS: dict[ReferralStatus, str] = {
    ReferralStatus.PENDING: "request being delivered",
    ReferralStatus.EXPIRED: "answer overdue",
    ReferralStatus.DELIVERY_FAILED: "request could not be delivered by its channel",
    ReferralStatus.NO_SHOW: "client did not attend",
}
# The ServiceRequest stays active while the referral is in play; it is completed when the
# service was given and revoked when this referral ends any other way (declined, no-show,
# withdrawn): a new referral is a new ServiceRequest.
REQUEST_STATUS: dict[ReferralStatus, str] = {
    ReferralStatus.COMPLETED: "completed",
    ReferralStatus.DECLINED: "revoked",
    ReferralStatus.NO_SHOW: "revoked",
    ReferralStatus.REVOKED: "revoked",
}

# What a provider's new Task status answers. `in-progress` is an acceptance: casework's
# lifecycle has no step between taking a client on and the service being given, so it accepts
# a referral still awaiting its answer and changes nothing on an accepted one. `received` only
# acknowledges (None). The other Task statuses are not the provider's to set.
ANSWER_OF: dict[str, ReferralAnswer | None] = {
    "received": None,
    "accepted": ReferralAnswer.ACCEPTED,
    "in-progress": ReferralAnswer.ACCEPTED,
    "rejected": ReferralAnswer.DECLINED,
    "completed": ReferralAnswer.COMPLETED,
    "failed": ReferralAnswer.NO_SHOW,
}
TASK_STATUSES = frozenset(
    [
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "cancelled",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "entered-in-error",
    ]
)

ISSUE_CODE: dict[Refusal, str] = {
    Refusal.VALIDATION: "invalid",
    Refusal.BAD_REQUEST: "invalid",
    Refusal.NOT_FOUND: "not-found",
    Refusal.UNAUTHENTICATED: "login",
    Refusal.FORBIDDEN: "forbidden",
    Refusal.INVALID_TRANSITION: "business-rule",
    Refusal.GUARD_FAILED: "business-rule",
    Refusal.CONFLICT: "conflict",
    Refusal.CLOSED: "business-rule",
    Refusal.NOT_RUNNING: "business-rule",
    Refusal.UNAVAILABLE: "transient",
}


def task_id(case: str, referral: str) -> str:
    """A referral's Task and ServiceRequest id: FHIR ids allow [A-Za-z0-9.-], case numbers have no dot."""
    return f"{case}.{referral}"


def referral_of(resource_id: str) -> tuple[str, str] | None:
    case, dot, referral = resource_id.rpartition(".")
    return (case, referral) if dot and case and referral else None


@dataclass(frozen=True)
class ReferralFacts:
    """What casework knows of one referral: its record row, overlaid with the live case."""

    case: str
    referral: str
    provider: str
    provider_name: str
    service: str
    status: ReferralStatus
    requested_at: datetime
    updated_at: datetime
    reason: str = ""  # the provider's (declined, no-show) or ours (revoked)

    @property
    def id(self) -> str:
        return task_id(self.case, self.referral)


@dataclass(frozen=True)
class SentRequest:
    """The referral request as it went to the provider (the outbox's payload): `client` holds
    exactly the client data the referral shared, nothing more."""

    reason: str
    referred_by: str
    client: dict[str, Any]


def _text(text: str) -> dict[str, str]:
    return {"text": text}


def task(facts: ReferralFacts) -> Task:
    status = TASK_STATUS[facts.status]
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": facts.id,
        "meta": {"lastUpdated": facts.updated_at.isoformat()},
        "identifier": [{"system": REFERRAL_SYSTEM, "value": f"{facts.case}/{facts.referral}"}],
        "status": status,
        "intent": "order",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
        "focus": {"reference": f"ServiceRequest/{facts.id}"},
        "authoredOn": facts.requested_at.isoformat(),
        "lastModified": facts.updated_at.isoformat(),
        "requester": {"display": "casework"},
        "owner": {"reference": f"Organization/{facts.provider}", "display": facts.provider_name},
    }
    if business := BUSINESS_STATUS.get(facts.status):
        resource["businessStatus"] = _text(business)
    if facts.reason and status in ("rejected", "failed", "cancelled"):
        resource["statusReason"] = _text(facts.reason)
    return Task.model_validate(resource)


def patient(client: dict[str, Any]) -> dict[str, Any] | None:
    """The shared client data as a contained Patient; None when nothing about the person was shared."""
    found: dict[str, Any] = {}
    if client.get("name"):
        found["name"] = [_text(client["name"])]
    telecom = [
        {"system": system, "value": client[key]}
        for key, system in (("phone", "phone"), ("email", "email"))
        if client.get(key)
    ]
    if telecom:
        found["telecom"] = telecom
    if client.get("birth_date"):
        found["birthDate"] = client["birth_date"]
    if client.get("address"):
        found["address"] = [_text(client["address"])]
    return {"resourceType": "Patient", "id": "client"} | found if found else None


def service_request(facts: ReferralFacts, sent: SentRequest) -> ServiceRequest:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": facts.id,
        "meta": {"lastUpdated": facts.updated_at.isoformat()},
        "identifier": [{"system": REFERRAL_SYSTEM, "value": f"{facts.case}/{facts.referral}"}],
        "status": REQUEST_STATUS.get(facts.status, "active"),
        "intent": "order",
        "code": {"coding": [{"system": SERVICE_TYPE_SYSTEM, "code": facts.service}]},
        "authoredOn": facts.requested_at.isoformat(),
        "requester": {"display": f"casework ({sent.referred_by})"},
        "performer": [{"reference": f"Organization/{facts.provider}", "display": facts.provider_name}],
        "reasonCode": [_text(sent.reason)],
    }
    person = patient(sent.client)
    if person is not None:
        resource["contained"] = [person]
        resource["subject"] = {"reference": "#client"}
    else:
        resource["subject"] = {"display": "a client of casework (no personal data shared)"}
    if needs := sent.client.get("needs"):  # shared only with the NEEDS consent
        listed = ", ".join(f"{domain} (severity {severity})" for domain, severity in needs.items())
        resource["note"] = [_text(f"needs: {listed}; risk: {sent.client.get('risk', 'unknown')}")]
    return ServiceRequest.model_validate(resource)


def searchset(base: str, self_url: str, tasks: list[Task]) -> Bundle:
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(tasks),
            "link": [{"relation": "self", "url": self_url}],
            "entry": [
                {"fullUrl": f"{base}/Task/{t.id}", "resource": t, "search": {"mode": "match"}} for t in tasks
            ],
        }
    )


def outcome(kind: Refusal, diagnostics: str) -> OperationOutcome:
    return OperationOutcome.model_validate(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": ISSUE_CODE[kind], "diagnostics": diagnostics}],
        }
    )


def reason_of(received: Task) -> str:
    """The provider's reason: statusReason's text, else its first coding's display or code."""
    reason = received.statusReason
    if reason is None:
        return ""
    if reason.text:
        return str(reason.text)
    for coding in reason.coding or []:
        if coding.display or coding.code:
            return str(coding.display or coding.code)
    return ""
