"""Every refusal has an HTTP status and a CLI exit code (service/refusals.py): a new kind of
refusal fails here until both maps name it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain import commands as c
from domain.errors import Refusal, explain
from domain.models import unlikely_phone
from service.refusals import EXIT_CODE, HTTP_STATUS, title
from tests.scenario import ALICE


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
    assert title(Refusal.VALIDATION) == "Invalid request"  # as the API's shape checks say it


def test_a_fields_allowed_values_are_named_as_people_type_them() -> None:
    """Not as Python prints an enum's members ("<FollowUpKind.CHECK_IN: 'check_in'>")."""
    with pytest.raises(ValidationError) as refused:
        c.ScheduleFollowUp(actor=ALICE, kind="party", at="2027-01-04T10:00:00+00:00")
    said = explain(refused.value.errors())
    assert said == "kind: Input should be 'check_in', 'home_visit', 'phone_call' or 'appointment'"


def test_a_rule_a_command_breaks_is_said_without_pydantics_preamble() -> None:
    """Not "Value error, a declined referral needs a reason": that is pydantic's, not ours."""
    with pytest.raises(ValidationError) as refused:
        c.AnswerReferral(actor=ALICE, referral_id="R7", answer="declined")
    assert explain(refused.value.errors(), whole="answer") == "answer: a declined referral needs a reason"


@pytest.mark.parametrize(
    "phone", ["555-0142", "+44 20 7946 0958", "(02) 9374 4000", "555.0142 x12", "+1 555 0100 ext. 7"]
)
def test_a_phone_written_as_staff_write_numbers_is_taken(phone: str) -> None:
    assert unlikely_phone(phone) is None


@pytest.mark.parametrize("phone", ["call her mum", "555-0142!", "12", "ask at reception 4", "+1 " + "5" * 21])
def test_a_phone_that_is_no_number_is_refused_saying_what_a_number_looks_like(phone: str) -> None:
    assert f"{phone!r} is not a phone number: write its 5 to 20 digits" in (unlikely_phone(phone) or "")
