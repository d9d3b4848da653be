"""Every refusal has an HTTP status and a CLI exit code (service/refusals.py): a new kind of
refusal fails here until both maps name it."""

from __future__ import annotations

from domain.errors import Refusal
from service.refusals import EXIT_CODE, HTTP_STATUS, title


def test_every_refusal_has_an_http_status_and_an_exit_code() -> None:
    assert set(HTTP_STATUS) == set(Refusal)
    assert set(EXIT_CODE) == set(Refusal)


def test_statuses_are_client_errors_or_unavailable_and_exit_codes_leave_0_and_1_free() -> None:
    assert all(400 <= status < 500 or status == 503 for status in HTTP_STATUS.values())
    assert set(EXIT_CODE.values()) == {2, 3, 4, 5, 6}  # 0 done, 1 anything that is not a refusal


def test_refusals_that_mean_the_same_to_a_person_share_an_exit_code() -> None:
    assert EXIT_CODE[Refusal.FORBIDDEN] == EXIT_CODE[Refusal.UNAUTHENTICATED]
    not_now = {Refusal.GUARD_FAILED, Refusal.INVALID_TRANSITION, Refusal.CONFLICT, Refusal.CLOSED}
    assert {EXIT_CODE[r] for r in not_now} == {5}
    assert HTTP_STATUS[Refusal.UNAUTHENTICATED] == 401
    assert title(Refusal.GUARD_FAILED) == "Guard failed"
