"""How a refusal is named and how invalid input is explained to a person.

`Refusal` is the one list of reasons a request can be refused; every layer names a refusal
with it (the domain's `Rejected`, the workflow's `ApplicationError` type, the facade's
`CaseError`), and `service/refusals.py` maps each to an HTTP status and a CLI exit code.
Pure standard library: the workflow sandbox passes the domain through.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any


class Refusal(StrEnum):
    """Why a request was refused. The value is the word on the wire (ApplicationError type,
    problem title, CLI line), so renaming a member changes what callers see."""

    VALIDATION = "validation"  # the input is malformed or names nothing known (program, provider)
    BAD_REQUEST = "bad_request"  # well-formed, but cannot be done as asked (a list query Temporal refuses)
    NOT_FOUND = "not_found"  # no such case or referral (or not one the caller may know of)
    UNAUTHENTICATED = "unauthenticated"  # who acts is not proven (no, forged or expired signed actor)
    FORBIDDEN = "forbidden"  # the actor's role or caseload does not allow this
    INVALID_TRANSITION = "invalid_transition"  # no such action from the case's stage
    GUARD_FAILED = "guard_failed"  # the action exists here but a condition does not hold yet
    CONFLICT = "conflict"  # it clashes with what exists (a number or intake reference in use)
    CLOSED = "closed"  # the case is archived: its reopen window has passed
    NOT_RUNNING = "not_running"  # the case's workflow stopped; a supervisor can restore it
    ERASED = "erased"  # the client's data was erased: what was asked for no longer exists
    UNAVAILABLE = "unavailable"  # casework cannot do it now (no worker, no record store): retry


class Rejected(Exception):
    """A request refused, with a message a person can act on; `kind` says which refusal."""

    def __init__(self, kind: Refusal, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


def explain(errors: Iterable[Mapping[str, Any]], whole: str = "input") -> str:
    """Pydantic's errors as 'field.path: message; ...' (`whole` names a problem with no field)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or whole}: {_plain(e['msg'])}" for e in errors)


# An enum member as Python prints it (pydantic names a field's allowed members so):
# "<FollowUpKind.CHECK_IN: 'check_in'>" is said "'check_in'", the word people type.
_MEMBER = re.compile(r"<[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*: ('[^']*')>")


# What pydantic puts before the message of a validator that raised: not for people.
_RAISED = re.compile(r"^(Value error|Assertion failed), ")


def _plain(message: str) -> str:
    return _MEMBER.sub(r"\1", _RAISED.sub("", message))
