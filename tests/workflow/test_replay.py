"""Running cases must survive new code: saved histories replay without non-determinism.

The histories were recorded by tests/histories/record.py from real cases at several
stages, including one archived after closure. A change that breaks replay would break
every case already open in production.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import workflow_runner
from workflows.case import CaseWorkflow

HISTORIES = sorted((Path(__file__).parents[1] / "histories").glob("*.json"))


def test_there_are_histories_from_several_stages() -> None:
    assert {p.stem for p in HISTORIES} >= {
        "archived_after_closure",
        "escalated_in_monitoring",
        "resumed_after_hold",
    }


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_saved_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[CaseWorkflow], data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )
    history = WorkflowHistory.from_json(f"case-{path.stem}", path.read_text())  # noqa: ASYNC240 - a small file
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
