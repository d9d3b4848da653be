"""What the terminal prints: a receipt, one line a caseworker reads at a glance; a case list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.console import Console

from cli.render import list_table
from cli.render import receipt as receipt_line
from domain import commands as c
from domain.models import Stage
from domain.views import CaseSummary, receipt
from tests.scenario import ALICE, Story

DAY = timedelta(days=1)


def test_a_withdrawal_says_which_referrals_it_revoked_and_which_follow_ups_it_cancelled() -> None:
    story = Story("weekly").to(Stage.MONITORING)  # a referral sent, a home visit scheduled
    referral = story.case.referrals[-1]
    event = story.do(c.Withdraw(actor=ALICE, reason="client moved away"))
    line = receipt_line(receipt(story.case, event, story.program, key="k-withdraw-1"))
    assert line.startswith(f"case {story.case.number}: withdraw done · stage closed · revoked {referral.id}")
    assert f"({referral.provider})" in line and "cancelled F" in line


def test_a_retried_command_says_it_had_already_been_done() -> None:
    story = Story("general")
    event = story.do(c.AddNote(actor=ALICE, text="called"))
    line = receipt_line(receipt(story.case, event, story.program, key="k-note-0001", repeated=True))
    assert f"add_note had already been done (#{event.seq})" in line


def test_a_retried_follow_up_names_the_follow_up_it_made() -> None:
    story = Story("general").to(Stage.COORDINATION)
    event = story.do(c.ScheduleFollowUp(actor=ALICE, kind="phone_call", at=story.now + 2 * DAY))
    line = receipt_line(receipt(story.case, event, story.program, key="k-call-0001", repeated=True))
    assert f"had already been done (#{event.seq}) · stage coordination · follow-up F{event.seq}" in line


def test_a_case_list_in_an_80_column_terminal_shows_every_case_number_whole() -> None:
    numbers = ["261127-58C1", "I-821D25B0AC", "K-0123456789"]
    rows = [
        CaseSummary(
            number=n,
            stage="coordination",
            manager="a-case-manager-with-a-long-id",
            program="housing-and-recovery",
            risk="medium",
            next_due=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
            overdue=True,
            running=True,
        )
        for n in numbers
    ]
    console = Console(width=80, record=True)
    console.print(list_table(rows))
    printed = console.export_text()
    assert all(n in printed for n in numbers), printed
