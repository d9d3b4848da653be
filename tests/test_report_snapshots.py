"""History reports are kept per scope for a while: computed once however many ask at once,
computed again once too old, never kept when the computation failed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from domain.access import Scope
from service.reports import Snapshots

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TEAM = Scope(supervisor="sam")


class Computation:
    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self) -> str:
        self.runs += 1
        await asyncio.sleep(0.01)  # long enough for the others to arrive meanwhile
        return f"figures #{self.runs}"


@pytest.mark.asyncio(loop_scope="session")
async def test_twenty_supervisors_asking_at_once_cost_one_computation() -> None:
    snapshots, compute = Snapshots(), Computation()
    answers = await asyncio.gather(*(snapshots.get(TEAM, "stages", T0, compute) for _ in range(20)))
    assert compute.runs == 1 and set(answers) == {"figures #1"}


@pytest.mark.asyncio(loop_scope="session")
async def test_figures_are_kept_for_their_age_then_computed_again() -> None:
    snapshots, compute = Snapshots(timedelta(minutes=5)), Computation()
    assert await snapshots.get(TEAM, "stages", T0, compute) == "figures #1"
    assert await snapshots.get(TEAM, "stages", T0 + timedelta(minutes=5), compute) == "figures #1"
    assert await snapshots.get(TEAM, "stages", T0 + timedelta(minutes=6), compute) == "figures #2"
    # a clock set back (another API process's, a test's) is not "fresh": computed again
    assert await snapshots.get(TEAM, "stages", T0, compute) == "figures #3"


@pytest.mark.asyncio(loop_scope="session")
async def test_each_scope_and_report_has_its_own_figures() -> None:
    snapshots, compute = Snapshots(), Computation()
    await snapshots.get(TEAM, "stages", T0, compute)
    assert await snapshots.get(Scope(supervisor="ruth"), "stages", T0, compute) == "figures #2"
    assert await snapshots.get(TEAM, "referrals", T0, compute) == "figures #3"
    assert await snapshots.get(TEAM, "stages", T0, compute) == "figures #1"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_failed_computation_reaches_everyone_waiting_and_is_not_kept() -> None:
    snapshots, compute = Snapshots(), Computation()

    async def broken() -> str:
        await asyncio.sleep(0.01)
        raise ConnectionError("the database went away")

    waiting = [snapshots.get(TEAM, "stages", T0, broken) for _ in range(3)]
    failures = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(f, ConnectionError) for f in failures)
    assert await snapshots.get(TEAM, "stages", T0, compute) == "figures #1"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_caller_who_gives_up_does_not_cancel_the_others_answer() -> None:
    snapshots, compute = Snapshots(), Computation()
    impatient = asyncio.ensure_future(snapshots.get(TEAM, "stages", T0, compute))
    patient = asyncio.ensure_future(snapshots.get(TEAM, "stages", T0, compute))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient == "figures #1"


@pytest.mark.asyncio(loop_scope="session")
async def test_only_so_many_are_kept_the_least_recently_read_go_first() -> None:
    snapshots, compute = Snapshots(size=2), Computation()
    for supervisor in ("a", "b"):
        await snapshots.get(Scope(supervisor=supervisor), "stages", T0, compute)
    await snapshots.get(Scope(supervisor="a"), "stages", T0, compute)  # read again: kept
    await snapshots.get(Scope(supervisor="c"), "stages", T0, compute)  # pushes out b
    assert await snapshots.get(Scope(supervisor="a"), "stages", T0, compute) == "figures #1"
    assert await snapshots.get(Scope(supervisor="b"), "stages", T0, compute) == "figures #4"
