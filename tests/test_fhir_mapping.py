"""Every referral status shows as a Task status, and every answer a provider can give has a Task status."""

from __future__ import annotations

from api.fhir_resources import ANSWER_OF, TASK_STATUS, TASK_STATUSES, referral_of, task_id
from domain.models import ReferralAnswer, ReferralStatus


def test_every_referral_status_has_a_task_status() -> None:
    # A new status (e.g. a cancelled referral) must be given its Task status here.
    assert set(TASK_STATUS) == set(ReferralStatus)
    assert set(TASK_STATUS.values()) <= TASK_STATUSES


def test_every_answer_can_be_given_as_a_task_status_and_reads_back_as_itself() -> None:
    assert {a for a in ANSWER_OF.values() if a} == set(ReferralAnswer)
    for status, answer in ANSWER_OF.items():
        if answer is not None and status != "in-progress":  # in-progress is read as an acceptance
            assert TASK_STATUS[answer.status] == status


def test_a_task_id_names_its_case_and_referral() -> None:
    assert referral_of(task_id("261125-7KQ2", "R7")) == ("261125-7KQ2", "R7")
    assert referral_of("no-referral") is None
