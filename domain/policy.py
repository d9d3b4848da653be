"""Programs as data: deadlines, cadences, the escalation ladder, approval rules.

A program is defined by a TOML file in programs/. Durations are ISO-8601
("P14D", "PT30S") so a test program can run a whole lifecycle in seconds.
A running case keeps the snapshot of its program it was opened with, so editing
a program file never changes the history of a case already running.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from domain import bounds
from domain.errors import explain
from domain.models import NeedDomainSlug, RiskLevel, Role, ServiceTypeSlug, Stage


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rung(_Strict):
    """One step of the escalation ladder: `after` the deadline, tell `notify`."""

    after: timedelta = Field(ge=timedelta(0))
    notify: Role


class Escalation(_Strict):
    reminder_lead: timedelta = Field(ge=timedelta(0), description="remind this long before a deadline")
    ladder: list[Rung] = Field(min_length=1)

    @field_validator("ladder")
    @classmethod
    def _ascending(cls, ladder: list[Rung]) -> list[Rung]:
        afters = [r.after for r in ladder]
        if afters != sorted(afters) or len(set(afters)) != len(afters):
            raise ValueError("ladder rungs must have strictly increasing 'after' durations")
        return ladder


class Monitoring(_Strict):
    follow_up_every: timedelta = Field(gt=timedelta(0))
    plan_review_every: timedelta = Field(gt=timedelta(0))


class Referrals(_Strict):
    response_time: timedelta = Field(
        default=timedelta(days=5), gt=timedelta(0), description="a provider answers a referral within this"
    )


class Approvals(_Strict):
    plan_needs_supervisor_at: frozenset[RiskLevel] = frozenset({RiskLevel.HIGH})
    close_with_unmet_goals_needs_supervisor: bool = True


# Only these stages have a "must leave by" deadline; monitoring runs on cadences
# and on_hold/closed stop the clock.
DEADLINE_STAGES = (Stage.INTAKE, Stage.ASSESSMENT, Stage.PLANNING, Stage.COORDINATION, Stage.EVALUATION)


class Program(_Strict):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    lead: str = Field(description="actor id of the program lead, the top of the escalation ladder")
    reopen_window: timedelta = Field(ge=timedelta(0))
    deadlines: dict[Stage, timedelta]
    monitoring: Monitoring
    escalation: Escalation
    approvals: Approvals = Approvals()
    # Defaults matter beyond convenience: running cases carry the program snapshot they
    # were opened with, and a new required field would fail to load their input on replay.
    referrals: Referrals = Referrals()
    # What the program works on, in the vocabulary's words: the need domains its assessments
    # start from and the services it refers to (the directory has a provider for each:
    # `Directory.uncovered`). Descriptive: a case may still record any known need.
    needs: tuple[NeedDomainSlug, ...] = ()
    services: tuple[ServiceTypeSlug, ...] = ()
    # Every deadline skips time on hold. Runs from before referral answers and appointments
    # did so replay with this False (the workflow sets it: patch "every-deadline-honours-holds"),
    # so the notices they issued then are the notices they issue on replay.
    holds_pause_every_deadline: bool = True
    # A follow-up that invites the client is refused when no invitation could reach them (no
    # consent to share contact details, or no email). Runs started before the rule accepted such
    # follow-ups and replay them with this False (the workflow sets it by the run's generation);
    # a command new to them is still checked (their validator's program has it True).
    invitations_need_a_reachable_client: bool = True
    # An outcome must fit the facts: a follow-up is recorded as attended or missed only once its
    # time has (nearly) come, and a closing outcome fits the goals it names as met; and a
    # follow-up is booked at most 5 years ahead (domain/lifecycle.py). Runs started
    # before the rule took some such commands and replay them with this False (the workflow sets
    # it by the run's generation); a command new to them is still checked (the validator's program).
    outcomes_fit_the_facts: bool = True

    @model_validator(mode="after")
    def _deadline_stages(self) -> Program:
        for stage in (Stage.INTAKE, Stage.ASSESSMENT, Stage.PLANNING):
            if stage not in self.deadlines:
                raise ValueError(f"deadlines.{stage.value} is required")
        for stage, allowed in self.deadlines.items():
            if stage not in DEADLINE_STAGES:
                raise ValueError(
                    f"deadlines.{stage.value}: stage has no deadline (allowed: "
                    f"{', '.join(s.value for s in DEADLINE_STAGES)})"
                )
            if allowed <= timedelta(0):
                raise ValueError(f"deadlines.{stage.value} must be positive")
        return self


class ProgramError(ValueError):
    """A program file that cannot be used; the message names the file and field."""


def load_program(path: Path) -> Program:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProgramError(f"{path}: not valid TOML: {exc}") from exc
    data.setdefault("key", path.stem)
    try:
        program = Program.model_validate(data)
    except ValidationError as exc:
        problems = explain(exc.errors(), whole="(file)")
        raise ProgramError(f"{path}: {problems}") from exc
    if program.key != path.stem:
        raise ProgramError(f"{path}: key: '{program.key}' must match the file name '{path.stem}'")
    size = len(program.model_dump_json().encode())
    if size > bounds.MAX_PROGRAM_BYTES:
        raise ProgramError(
            f"{path}: {size} bytes as a case carries it, more than the {bounds.MAX_PROGRAM_BYTES} a "
            "program may take (every case carries its program with every recording): shorten the "
            "name, or the lists of needs, services or escalation steps"
        )
    return program


def load_programs(directory: Path) -> dict[str, Program]:
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise ProgramError(f"{directory}: no program files (*.toml)")
    return {p.key: p for p in map(load_program, files)}


def human(duration: timedelta) -> str:
    """A duration as people say it: '90 days', '2 days 4 hours', '30 seconds'."""
    total = int(duration.total_seconds())
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    return " ".join(parts) or "0 seconds"
