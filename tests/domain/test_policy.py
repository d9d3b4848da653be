"""Programs are data; a broken program file says which file and which field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from domain import bounds
from domain.models import RiskLevel, Role, Stage
from domain.policy import ProgramError, human, load_program, load_programs
from tests.scenario import ROOT

GOOD = (ROOT / "programs" / "general.toml").read_text()


def write(tmp_path: Path, text: str, name: str = "general") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_shipped_programs_load() -> None:
    programs = load_programs(ROOT / "programs")
    assert {"general", "housing"} <= set(programs)
    housing = programs["housing"]
    assert housing.deadlines[Stage.INTAKE] == timedelta(days=1)
    assert housing.approvals.plan_needs_supervisor_at == {RiskLevel.MEDIUM, RiskLevel.HIGH}
    assert [r.notify for r in housing.escalation.ladder] == [
        Role.CASE_MANAGER,
        Role.SUPERVISOR,
        Role.PROGRAM_LEAD,
    ]


def test_durations_can_be_seconds_for_tests() -> None:
    fast = load_program(ROOT / "tests" / "programs" / "fast.toml")
    assert fast.deadlines[Stage.INTAKE] == timedelta(seconds=4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('intake = "P3D"', 'intake = "three days"'), r"general.toml: deadlines.intake: .*duration"),
        (('follow_up_every = "P30D"', ""), r"general.toml: monitoring.follow_up_every: Field required"),
        (
            ('notify = "supervisor"', 'notify = "boss"'),
            r"general.toml: escalation.ladder.1.notify: Input should be",
        ),
        (('after = "P7D"', 'after = "P1D"'), r"general.toml: escalation.ladder: .*strictly increasing"),
        (('intake = "P3D"', 'intake = "P3D"\nclosed = "P1D"'), r"general.toml: .*closed.*has no deadline"),
        (('name = "General', 'nmae = "General'), r"general.toml: .*nmae: Extra inputs are not permitted"),
        (("[deadlines]", "[deadlines"), r"general.toml: not valid TOML"),
    ],
)
def test_a_malformed_program_names_file_and_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ProgramError, match=message):
        load_program(write(tmp_path, GOOD.replace(old, new, 1)))


def test_every_shipped_program_fits_what_a_case_may_carry() -> None:
    for program in load_programs(ROOT / "programs").values():
        assert len(program.model_dump_json().encode()) <= bounds.MAX_PROGRAM_BYTES


def test_a_program_too_big_to_ride_with_every_recording_is_refused_at_load(tmp_path: Path) -> None:
    long_name = 'name = "' + "General case management, " * 80 + '"'
    with pytest.raises(
        ProgramError, match=r"general.toml: \d+ bytes as a case carries it, more than the 2000"
    ):
        load_program(write(tmp_path, GOOD.replace('name = "General case management"', long_name, 1)))


def test_the_key_must_match_the_file_name(tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match="key: 'general' must match the file name 'other'"):
        load_program(write(tmp_path, 'key = "general"\n' + GOOD, name="other"))


def test_an_empty_programs_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match="no program files"):
        load_programs(tmp_path)


def test_durations_read_as_people_say_them() -> None:
    assert human(timedelta(days=90)) == "90 days"
    assert human(timedelta(days=2, hours=4)) == "2 days 4 hours"
    assert human(timedelta(seconds=1)) == "1 second"
