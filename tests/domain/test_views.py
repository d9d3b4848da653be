"""What people see of a case: a delivery that keeps failing is said plainly, and only while it lasts."""

from __future__ import annotations

from datetime import timedelta

from domain.models import FailingDelivery, Stage
from domain.views import case_view, details_markdown
from tests.scenario import T0, Story

FAILING = FailingDelivery(
    key="C-1:referral:R4",
    kind="referral_request",
    to="harbour",
    since=T0,
    attempts=9,
    last_error="HTTP 503 from https://harbour.example.org/casework: busy",
)


def test_a_failing_delivery_shows_in_the_view_and_the_ui_details_until_it_ends() -> None:
    story = Story("weekly").to(Stage.ASSESSMENT)
    now = T0 + timedelta(hours=5)
    view = case_view(story.case, story.program, now, seq=len(story.events), failing=[FAILING])
    assert view.failing_deliveries == [FAILING]
    assert (
        "- referral_request: delivery to harbour failing since 2026-01-05 09:00 UTC "
        "(9 attempts, last error: HTTP 503 from https://harbour.example.org/casework: busy)"
    ) in details_markdown(view)

    delivered = case_view(story.case, story.program, now, seq=len(story.events))
    assert delivered.failing_deliveries == [] and "failing" not in details_markdown(delivered)
