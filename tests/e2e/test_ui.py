"""The Temporal Web UI, in a real browser: cases as rows with their facts (search attributes:
readable by anyone who reaches the UI, so no client data), and current details (a payload,
encrypted: decoded for the signed-in case manager)."""

from __future__ import annotations

import json
import time

from playwright.sync_api import Browser, Frame, Page, Route
from playwright.sync_api import Error as PlaywrightError

from tests.e2e.conftest import sign_in
from tests.e2e.test_cli import ok

# The columns a supervisor adds with "Configure Columns"; the UI keeps them in the browser.
COLUMNS = {
    "default": [
        {"label": label}
        for label in ("Status", "Workflow ID", "CaseStage", "CaseManager", "CaseNextDue", "CaseOverdue")
    ]
}


def open_case_in_monitoring(env: dict[str, str]) -> str:
    alice = env | {"CASEWORK_API_KEY": "dev-alice"}
    number: str = json.loads(
        ok(
            "open",
            "--given-name",
            "Ines",
            "--family-name",
            "Duarte",
            "--supervisor",
            "sam",
            "--json",
            env=alice,
        )
    )["case"]["number"]
    ok("accept", number, env=alice)
    ok("complete-assessment", number, "--need", "income:2", "--risk", "low", env=alice)
    ok("submit-plan", number, "--goal", "g1|Benefits in payment|award letter|2027-02-01", env=alice)
    ok("approve-plan", number, env=alice)
    ok("record-consent", number, "--share", "name", env=alice)
    ok(
        "refer",
        number,
        "--provider",
        "welfare-rights",
        "--service",
        "income_benefits",
        "--reason",
        "benefit appeal",
        "--share",
        "name",
        env=alice,
    )
    ok("start-monitoring", number, env=alice)
    return number


def details_text(page: Page, *wanted: str, within_s: float = 20) -> str:
    """Summary and current details: the UI renders each as markdown in a frame of its own, drawn
    again as payloads are decoded and the query answers, so read until all `wanted` are there."""
    deadline = time.monotonic() + within_s
    while True:
        text = "\n".join(frame_text(f) for f in page.frames[1:])
        if all(w in text for w in wanted) or time.monotonic() > deadline:
            return text
        page.wait_for_timeout(250)


def frame_text(frame: Frame) -> str:
    try:
        return frame.locator("body").inner_text(timeout=2_000)
    except PlaywrightError:  # replaced (detached) while being read: the next round reads the new one
        return ""


def test_the_case_list_shows_stage_manager_and_next_due(stack: dict[str, str], browser: Browser) -> None:
    number = open_case_in_monitoring(stack)
    page: Page = browser.new_page(viewport={"width": 1500, "height": 800})
    page.goto(f"{stack['UI']}/namespaces/default/workflows")
    page.evaluate(
        "cols => localStorage.setItem('namespace-workflow-table-columns', JSON.stringify(cols))", COLUMNS
    )
    page.reload()
    row = page.get_by_role("row").filter(has_text=f"case-{number}")
    row.wait_for(timeout=20_000)
    text = row.inner_text()
    assert "monitoring" in text and "alice" in text
    assert "2026" in text or "2027" in text  # CaseNextDue is a date
    assert "Ines" not in page.content()  # no client name anywhere in the list


def test_a_case_page_shows_its_current_details(stack: dict[str, str], browser: Browser) -> None:
    number = open_case_in_monitoring(stack)
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    sign_in(page, stack, "dev-alice")  # current details are encrypted: decoded for her cases only
    page.goto(f"{stack['UI']}/namespaces/default/workflows/case-{number}")
    page.get_by_text("User Metadata").click()
    text = details_text(page, "Stage:", f"Case {number}")
    assert "Stage: monitoring" in text and "Manager: alice · supervisor sam" in text
    assert "Next due: 20" in text
    assert f"Case {number} · General case management" in text  # the summary
    assert "income_benefits → welfare-rights" in text
    assert "Ines" not in text


def test_the_api_docs_work_offline(browser: Browser, stack: dict[str, str]) -> None:
    """/docs renders every operation with nothing fetched from outside this machine."""
    page = browser.new_page()
    outside: list[str] = []

    def only_local(route: Route) -> None:
        if route.request.url.startswith(stack["API"]):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{stack['API']}/docs")
    page.get_by_text("/cases/{number}/restore").first.wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Authorize").count() == 1  # the API key scheme
    assert outside == []
    page.close()
