"""Each refusal (domain/errors.py `Refusal`) as an HTTP status and a CLI exit code: the one
place callers learn how a refusal is reported. Both maps name every member (a test checks),
so a new kind of refusal cannot ship without a status and an exit code.

CLI exit codes, by what the person at the terminal can do about it:

    0  done
    1  anything else (casework could not start, a bulk run with failures, a bug)
    2  bad input: fix the command (validation, bad_request; also click's usage errors)
    3  not found: check the case or referral named (or it was erased)
    4  not allowed for you: forbidden, unauthenticated
    5  not allowed now: the case's stage, a guard, a conflict, a closed or stopped case
    6  unavailable: nothing was wrong with the command; retry later (with the same --key)
"""

from __future__ import annotations

from domain.errors import Refusal, Rejected

HTTP_STATUS: dict[Refusal, int] = {
    Refusal.VALIDATION: 422,
    Refusal.BAD_REQUEST: 400,
    Refusal.NOT_FOUND: 404,
    Refusal.UNAUTHENTICATED: 401,
    Refusal.FORBIDDEN: 403,
    Refusal.INVALID_TRANSITION: 409,
    Refusal.GUARD_FAILED: 409,
    Refusal.CONFLICT: 409,
    Refusal.CLOSED: 409,
    Refusal.NOT_RUNNING: 409,
    Refusal.ERASED: 410,
    Refusal.UNAVAILABLE: 503,
}

BAD_INPUT, NOT_FOUND, NOT_YOURS, NOT_NOW, UNAVAILABLE = 2, 3, 4, 5, 6

EXIT_CODE: dict[Refusal, int] = {
    Refusal.VALIDATION: BAD_INPUT,
    Refusal.BAD_REQUEST: BAD_INPUT,
    Refusal.NOT_FOUND: NOT_FOUND,
    Refusal.UNAUTHENTICATED: NOT_YOURS,
    Refusal.FORBIDDEN: NOT_YOURS,
    Refusal.INVALID_TRANSITION: NOT_NOW,
    Refusal.GUARD_FAILED: NOT_NOW,
    Refusal.CONFLICT: NOT_NOW,
    Refusal.CLOSED: NOT_NOW,
    Refusal.NOT_RUNNING: NOT_NOW,
    Refusal.ERASED: NOT_FOUND,
    Refusal.UNAVAILABLE: UNAVAILABLE,
}


# Bad input is "Invalid request" whether the request's shape or the door found it (an empty note
# and a note of only spaces are refused alike).
TITLES = {Refusal.VALIDATION: "Invalid request"}


def title(refusal: Refusal) -> str:
    """The refusal as a problem's title: "Guard failed"."""
    return TITLES.get(refusal) or refusal.value.replace("_", " ").capitalize()


class CaseError(Exception):
    """A refusal as the API and the CLI see it (HTTP_STATUS and EXIT_CODE above map `kind` to a
    status and an exit code). `key`: the command's idempotency key, when there was one."""

    def __init__(self, kind: Refusal, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.key = kind, message, key

    @classmethod
    def rejected(cls, refused: Rejected, key: str | None = None) -> CaseError:
        return cls(refused.kind, refused.message, key)
