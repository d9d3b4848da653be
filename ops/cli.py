"""The `casework` command: run the local stack, open cases, act on them, look at them.

Who acts is given with --as ID:ROLE (or CASEWORK_ACTOR). Errors print one line
and exit non-zero. Every run leaves through os._exit after flushing output:
the Temporal SDK can abort at interpreter exit (sdk-python#300), and a command
that worked must not report a crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from domain import commands as c
from domain.directory import DirectoryError, load_directory
from domain.errors import explain
from domain.models import (
    Actor,
    Assessment,
    Client,
    Goal,
    Need,
    NeedDomain,
    RiskLevel,
    Role,
    ServiceType,
    SharedField,
    Stage,
)
from domain.policy import ProgramError, load_programs
from ops import render
from ops.facade import CaseError, CaseOps, ListFilter, new_case_number, new_command_key, utcnow
from ops.settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="casework: every client case a durable Temporal workflow.",
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

AsOption = Annotated[str | None, typer.Option("--as", help="who acts, as ID:ROLE (or set CASEWORK_ACTOR)")]
CaseArg = Annotated[str, typer.Argument(help="case number")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


class Fail(Exception):
    """An error for the person at the terminal: printed as one line, exit code 1."""


def actor(as_: str | None) -> Actor:
    raw = as_ or os.environ.get("CASEWORK_ACTOR")
    if not raw:
        raise Fail("who is acting? pass --as ID:ROLE (e.g. --as alice:case_manager) or set CASEWORK_ACTOR")
    ident, _, role = raw.partition(":")
    roles = ", ".join(r.value for r in Role)
    try:
        return Actor(id=ident, role=Role(role))
    except ValueError:
        raise Fail(f"--as must be ID:ROLE with ROLE one of {roles} (got {raw!r})") from None


def run(work: Callable[[CaseOps], Awaitable[T]]) -> T:
    """Connect to Temporal, do the work, turn every failure into one clear line."""
    settings = Settings()

    async def go() -> T:
        from worker import connect

        try:
            programs = load_programs(settings.programs_dir)
            directory = load_directory(settings.directory_dir)
        except (ProgramError, DirectoryError) as exc:
            raise Fail(str(exc)) from None
        try:
            client = await asyncio.wait_for(connect(settings), timeout=10)
        except Exception as exc:  # connection refused, DNS, TLS: all mean the same here
            raise Fail(
                f"cannot reach Temporal at {settings.temporal_address} ({exc}); is `casework dev` running?"
            ) from None
        from store.db import engine

        record = engine(settings.database_url)
        try:
            timeout = timedelta(seconds=settings.command_timeout)
            return await work(CaseOps(client, programs, settings.task_queue, directory, record, timeout))
        finally:
            await record.dispose()

    try:
        return asyncio.run(go())
    except CaseError as exc:
        raise Fail(f"{exc.kind.replace('_', ' ')}: {exc.message}") from None


def validation_message(exc: ValidationError) -> str:
    return "invalid input: " + explain(exc.errors())


# The idempotency key of this invocation's command (`casework --key KEY ...` to retry one).
COMMAND_KEY: dict[str, str] = {}


@app.callback()
def options(
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="the command's idempotency key: give the key a timed-out command printed "
            "to retry it safely (it applies once)",
        ),
    ] = None,
) -> None:
    COMMAND_KEY["key"] = key or new_command_key()


def act(number: str, command: c.StaffCommand, as_json: bool = False) -> None:
    key = COMMAND_KEY.get("key") or new_command_key()
    try:
        done = run(lambda ops: ops.act(number, command, key))
    except Fail as failed:
        if "retrying with the same idempotency key" in str(failed):
            raise Fail(f"{failed} Retry: casework --key {key} {' '.join(sys.argv[1:])}") from None
        raise
    if as_json:
        out.print_json(done.model_dump_json())
    else:
        out.print(render.receipt(done))


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise Fail(f"{path}: {exc}") from None


# --- running the stack --------------------------------------------------------


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="Temporal frontend port")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal Web UI port")] = 8233,
) -> None:
    """Start a local Temporal dev server (data under ./var), register search attributes, run the worker."""
    from ops.devstack import run_dev

    settings = Settings(temporal_address=f"127.0.0.1:{port}", ui_port=ui_port)
    asyncio.run(run_dev(settings, announce=out.print))


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="default CASEWORK_API_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default CASEWORK_API_PORT or 8000")] = None,
) -> None:
    """Serve the HTTP API (the provider callback) against CASEWORK_TEMPORAL_ADDRESS."""
    from ops.api import connected_app, serve
    from ops.devstack import run_until_signalled
    from ops.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)

    async def go(stop: asyncio.Event) -> None:
        try:
            app_ = await connected_app(settings)
        except Exception as exc:
            raise Fail(f"cannot start the API: {exc}") from None
        out.print(f"API: http://{host or settings.api_host}:{port or settings.api_port}/docs")
        await serve(app_, host or settings.api_host, port or settings.api_port, stop)

    asyncio.run(run_until_signalled(go))


@app.command()
def worker() -> None:
    """Run a worker against CASEWORK_TEMPORAL_ADDRESS (default 127.0.0.1:7233)."""
    from ops.devstack import run_until_signalled
    from ops.logs import configure_logging
    from worker import run_worker

    settings = Settings()
    configure_logging(settings.log_level)
    asyncio.run(run_until_signalled(lambda stop: run_worker(settings, stop)))


@app.command()
def setup() -> None:
    """Prepare a Temporal namespace and the record store: search attributes, migrations. Idempotent."""
    from ops.temporal_setup import register_search_attributes
    from store.db import engine, migrate
    from worker import connect

    settings = Settings()

    async def go() -> None:
        try:
            client = await asyncio.wait_for(connect(settings), timeout=30)
        except Exception as exc:
            raise Fail(f"cannot reach Temporal at {settings.temporal_address} ({exc})") from None
        await register_search_attributes(client, settings.temporal_namespace)
        eng = engine(settings.database_url)
        try:
            await migrate(eng)
        finally:
            await eng.dispose()

    asyncio.run(go())
    out.print(f"search attributes registered on {settings.temporal_address}; record store migrated")


@app.command()
def report(
    csv_dir: Annotated[
        Path | None, typer.Option("--csv", help="also write each report as CSV into this folder")
    ] = None,
    chart: Annotated[
        Path | None, typer.Option(help="write a PNG of open cases by stage, week by week")
    ] = None,
) -> None:
    """Caseload, overdue items, referral outcomes, time in stage, cases per week — from the SQL record."""
    from ops.reports import all_reports, load_record, stage_chart
    from store.db import engine

    settings = Settings()

    async def go() -> Any:
        eng = engine(settings.database_url)
        try:
            return await load_record(eng)
        finally:
            await eng.dispose()

    try:
        programs = load_programs(settings.programs_dir)
        record = asyncio.run(go())
    except ProgramError as exc:
        raise Fail(str(exc)) from None
    except Exception as exc:  # a missing or unreachable database
        raise Fail(f"cannot read the record store {settings.database_url}: {exc}") from None
    now = utcnow()
    for name, rep in all_reports(record, programs, now).items():
        out.print(render.report_table(rep))
        if csv_dir is not None:
            csv_dir.mkdir(parents=True, exist_ok=True)
            (csv_dir / f"{name}.csv").write_text(rep.csv(), encoding="utf-8")
    if csv_dir is not None:
        out.print(f"CSV files written to {csv_dir}")
    if chart is not None:
        stage_chart(record, now, str(chart))
        out.print(f"chart written to {chart}")


@app.command()
def providers() -> None:
    """List the providers referrals can go to, with their services and channel."""
    try:
        found = load_directory(Settings().directory_dir)
    except DirectoryError as exc:
        raise Fail(str(exc)) from None
    out.print(render.providers_table(list(found.providers.values())))


@app.command()
def programs() -> None:
    """List the programs cases can be opened in."""
    try:
        found = load_programs(Settings().programs_dir)
    except ProgramError as exc:
        raise Fail(str(exc)) from None
    out.print(render.programs_table(list(found.values())))


# --- opening and looking at cases -----------------------------------------------


@app.command("open")
def open_case(
    program: Annotated[str, typer.Option(help="program key, see `casework programs`")] = "general",
    manager: Annotated[str | None, typer.Option(help="case manager id (default: the actor)")] = None,
    supervisor: Annotated[str | None, typer.Option()] = None,
    given_name: Annotated[str | None, typer.Option()] = None,
    family_name: Annotated[str | None, typer.Option()] = None,
    birth_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    email: Annotated[str | None, typer.Option()] = None,
    risk: Annotated[RiskLevel, typer.Option(help="risk at intake screening")] = RiskLevel.LOW,
    number: Annotated[str | None, typer.Option(help="case number (default: generated)")] = None,
    intake_reference: Annotated[str | None, typer.Option()] = None,
    client_json: Annotated[Path | None, typer.Option("--client-json", help="client details as JSON")] = None,
    note: Annotated[str, typer.Option()] = "",
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open a case: client details from flags or --client-json."""
    who = actor(as_)
    details: dict[str, Any] = load_json(client_json) if client_json else {}
    flags = {
        "given_name": given_name,
        "family_name": family_name,
        "birth_date": birth_date,
        "phone": phone,
        "email": email,
    }
    details |= {k: v for k, v in flags.items() if v is not None}
    command = c.OpenCase(
        actor=who,
        number=number or new_case_number(utcnow()),
        program=program,
        client=Client.model_validate(details),
        manager=manager or who.id,
        supervisor=supervisor,
        risk=risk,
        intake_reference=intake_reference,
        note=note,
    )
    view = run(lambda ops: ops.open_case(command))
    if as_json:
        out.print_json(view.model_dump_json())
    else:
        out.print(
            f"opened case {view.case.number} in {view.case.program} · manager {view.case.manager}"
            f" · next due {render.when(view.next_deadline)}"
        )


@app.command()
def show(number: CaseArg, as_json: JsonOption = False) -> None:
    """Show a case: stage, people, deadlines, overdue items, plan, referrals, recent events."""

    async def read(ops: CaseOps) -> tuple[Any, Any, Any]:
        view = await ops.view(number)
        recent = await ops.events(number, after=max(0, view.seq - 8))
        return view, recent, await ops.notes(number, limit=5)

    view, events, notes = run(read)
    if as_json:
        out.print_json(view.model_dump_json())
    else:
        render.case(out, view, events, [note for _, note in notes])


@app.command()
def history(
    number: CaseArg,
    after: Annotated[int, typer.Option(min=0, help="only events after this seq")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many (default: all)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every event of a case from the record, oldest first: who did what, when."""

    async def read(ops: CaseOps) -> list[Any]:
        events: list[Any] = []
        while limit is None or len(events) < limit:
            page = await ops.events(number, after=events[-1].seq if events else after, limit=500)
            events += page
            if len(page) < 500:
                break
        if not events and await ops.status(number) is None:
            raise CaseError("not_found", f"no case {number}")
        return events[:limit]

    events = run(read)
    if as_json:
        out.print_json(json.dumps([e.model_dump(mode="json") for e in events]))
    else:
        out.print(render.events_table(events))


@app.command()
def notes(
    number: CaseArg,
    before: Annotated[int | None, typer.Option(min=1, help="only notes of events before this seq")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOption = False,
) -> None:
    """A case's notes from the record, newest first (page back with --before)."""
    found = run(lambda ops: ops.notes(number, before=before, limit=limit))
    if as_json:
        out.print_json(json.dumps([{"seq": seq, **n.model_dump(mode="json")} for seq, n in found]))
        return
    for seq, note in found:
        out.print(f"#{seq} {render.when(note.at)} {note.author}: {note.text}", highlight=False)
    if len(found) == limit:
        out.print(f"(older: casework notes {number} --before {found[-1][0]})")


@app.command()
def restore(
    number: CaseArg,
    reason: Annotated[str, typer.Option(help="why the case is started again")],
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a case again from the record after Temporal lost its workflow (supervisors)."""
    who = actor(as_)
    view = run(lambda ops: ops.restore(number, who, reason))
    if as_json:
        out.print_json(view.model_dump_json())
    else:
        out.print(
            f"case {number} restored at event #{view.seq} · stage {view.case.stage.value}"
            + (f" · next due {render.when(view.next_deadline)}" if view.next_deadline else "")
        )


@app.command("list")
def list_cases(
    stage: Annotated[Stage | None, typer.Option()] = None,
    manager: Annotated[str | None, typer.Option()] = None,
    program: Annotated[str | None, typer.Option()] = None,
    risk: Annotated[RiskLevel | None, typer.Option()] = None,
    overdue: Annotated[bool | None, typer.Option("--overdue/--not-overdue")] = None,
    archived: Annotated[bool, typer.Option("--archived", help="include completed workflows")] = False,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 200,
    as_json: JsonOption = False,
) -> None:
    """List cases from Temporal visibility (search attributes only: no personal data)."""
    filt = ListFilter(
        stage=stage,
        manager=manager,
        program=program,
        risk=risk.value if risk else None,
        overdue=overdue,
        include_archived=archived,
    )
    rows = run(lambda ops: ops.list_cases(filt, limit))
    if as_json:
        out.print_json(json.dumps([r.model_dump(mode="json") for r in rows]))
    else:
        out.print(render.list_table(rows))


# --- staff actions ------------------------------------------------------------------


def _simple(name: str, model: type[Any], field: str | None, help_: str) -> None:
    """Register `casework NAME CASE [--FIELD TEXT]` for commands with at most one text field."""
    required = field is not None and model.model_fields[field].is_required()

    def command(
        number: CaseArg, text: str | None = None, as_: AsOption = None, as_json: JsonOption = False
    ) -> None:
        if required and not text:
            raise Fail(f"--{field} is required")
        kwargs = {field: text} if field and text is not None else {}
        cmd = model(actor=actor(as_), **kwargs)
        act(number, cmd, as_json)

    if field:
        command.__annotations__["text"] = Annotated[str | None, typer.Option(f"--{field}", help=field)]
    else:
        command.__annotations__["text"] = Annotated[str | None, typer.Option(hidden=True)]
    command.__doc__ = help_
    app.command(name)(command)


for _name, _model, _field, _help in (
    ("accept", c.Accept, "note", "Accept a referral at intake: the case moves to assessment."),
    ("decline", c.Decline, "reason", "Decline at intake: the case closes as declined."),
    ("approve-plan", c.ApprovePlan, "note", "Approve the submitted plan (high risk: supervisors only)."),
    ("reject-plan", c.RejectPlan, "reason", "Send the submitted plan back for changes."),
    ("start-monitoring", c.StartMonitoring, "note", "Services are arranged: start monitoring."),
    ("revise-plan", c.RevisePlan, "reason", "Back from monitoring to planning."),
    ("reassess", c.Reassess, "reason", "Back from monitoring to assessment."),
    ("begin-evaluation", c.BeginEvaluation, "note", "Monitoring is done: evaluate outcomes."),
    ("resume-monitoring", c.ResumeMonitoring, "reason", "Back from evaluation to monitoring."),
    ("withdraw", c.Withdraw, "reason", "The client leaves: close from any open stage."),
    ("suspend", c.Suspend, "reason", "Put the case on hold: deadlines pause."),
    ("resume", c.Resume, "note", "Return from hold to the stage the case left."),
    ("follow-up", c.RecordFollowUp, "summary", "Record a contact with the client."),
    ("review-plan", c.ReviewPlan, "summary", "Record a plan review."),
    ("note", c.AddNote, "text", "Add a note to the case."),
):
    _simple(_name, _model, _field, _help)


@app.command()
def assess(
    number: CaseArg,
    need: Annotated[list[str] | None, typer.Option(help="DOMAIN:SEVERITY[:NOTES], e.g. housing:3")] = None,
    risk: Annotated[RiskLevel | None, typer.Option()] = None,
    strength: Annotated[list[str] | None, typer.Option()] = None,
    barrier: Annotated[list[str] | None, typer.Option()] = None,
    summary: Annotated[str, typer.Option()] = "",
    from_json: Annotated[Path | None, typer.Option("--from-json", help="the assessment as JSON")] = None,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Complete the assessment: needs by domain (0-3), strengths, barriers, risk."""
    if from_json:
        assessment = Assessment.model_validate(load_json(from_json))
    else:
        if not need or risk is None:
            raise Fail("give at least one --need DOMAIN:SEVERITY and --risk, or --from-json")
        assessment = Assessment(
            needs=[parse_need(n) for n in need],
            risk=risk,
            strengths=strength or [],
            barriers=barrier or [],
            summary=summary,
        )
    cmd = c.CompleteAssessment(actor=actor(as_), assessment=assessment)
    act(number, cmd, as_json)


def parse_need(raw: str) -> Need:
    domain, _, rest = raw.partition(":")
    severity, _, notes = rest.partition(":")
    domains = ", ".join(d.value for d in NeedDomain)
    try:
        return Need(domain=NeedDomain(domain), severity=int(severity), notes=notes)
    except ValueError:
        raise Fail(
            f"--need {raw!r}: expected DOMAIN:SEVERITY with DOMAIN one of {domains} and SEVERITY 0-3"
        ) from None


@app.command("submit-plan")
def submit_plan(
    number: CaseArg,
    goal: Annotated[list[str] | None, typer.Option(help="ID|DESCRIPTION|OBJECTIVE|YYYY-MM-DD")] = None,
    from_json: Annotated[Path | None, typer.Option("--from-json", help="a JSON list of goals")] = None,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a plan: goals with measurable objectives and target dates."""
    if from_json:
        goals = [Goal.model_validate(g) for g in load_json(from_json)]
    elif goal:
        goals = [parse_goal(g) for g in goal]
    else:
        raise Fail("give at least one --goal ID|DESCRIPTION|OBJECTIVE|YYYY-MM-DD, or --from-json")
    cmd = c.SubmitPlan(actor=actor(as_), goals=goals)
    act(number, cmd, as_json)


def parse_goal(raw: str) -> Goal:
    parts = raw.split("|")
    if len(parts) != 4:
        raise Fail(f"--goal {raw!r}: expected ID|DESCRIPTION|OBJECTIVE|YYYY-MM-DD")
    ident, description, objective, target = parts
    try:
        target_date = date.fromisoformat(target)
    except ValueError:
        raise Fail(f"--goal {raw!r}: {target!r} is not a date (YYYY-MM-DD)") from None
    return Goal(id=ident, description=description, objective=objective, target_date=target_date)


@app.command()
def close(
    number: CaseArg,
    outcome: Annotated[str, typer.Option(help="goals_met | partially_met | goals_not_met")],
    met: Annotated[list[str] | None, typer.Option(help="id of a goal that was met (repeat)")] = None,
    summary: Annotated[str, typer.Option()] = "",
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Close after evaluation (unmet goals: supervisors only)."""
    cmd = c.Close.model_validate(
        {"actor": actor(as_), "outcome": outcome, "goals_met": met or [], "summary": summary}
    )
    act(number, cmd, as_json)


@app.command()
def reopen(
    number: CaseArg,
    reason: Annotated[str, typer.Option()],
    to: Annotated[str, typer.Option(help="assessment | monitoring")] = "assessment",
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reopen a closed case within the program's reopen window."""
    cmd = c.Reopen.model_validate({"actor": actor(as_), "to": to, "reason": reason})
    act(number, cmd, as_json)


@app.command()
def transfer(
    number: CaseArg,
    to: Annotated[str, typer.Option(help="the new case manager's id")],
    reason: Annotated[str, typer.Option()],
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Transfer the case to another case manager (supervisors only)."""
    cmd = c.Transfer(actor=actor(as_), to_manager=to, reason=reason)
    act(number, cmd, as_json)


@app.command()
def refer(
    number: CaseArg,
    provider: Annotated[str, typer.Option(help="provider id, see `casework providers`")],
    service: Annotated[ServiceType, typer.Option()],
    reason: Annotated[str, typer.Option()],
    share: Annotated[list[SharedField] | None, typer.Option(help="client data to share (repeat)")] = None,
    share_nothing: Annotated[bool, typer.Option("--share-nothing", help="an anonymous referral")] = False,
    consent_override: Annotated[str, typer.Option(help="supervisors: why sharing without consent")] = "",
    respond_within: Annotated[str | None, typer.Option(help="ISO-8601 duration, e.g. P2D")] = None,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Refer the client to a provider; the request is delivered by the provider's channel."""
    body: dict[str, Any] = {
        "actor": actor(as_),
        "provider": provider,
        "service": service,
        "reason": reason,
        "consent_override": consent_override,
        "respond_within": respond_within,
    }
    if share_nothing:
        body["share"] = []
    elif share:
        body["share"] = share
    cmd = c.Refer.model_validate(body)
    act(number, cmd, as_json)


@app.command()
def consent(
    number: CaseArg,
    share: Annotated[
        list[SharedField] | None, typer.Option(help="what the client agrees to share (repeat)")
    ] = None,
    withdraw: Annotated[bool, typer.Option("--withdraw", help="the client withdraws consent")] = False,
    note: Annotated[str, typer.Option()] = "",
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record the client's consent to share data with providers."""
    if not share and not withdraw:
        raise Fail("give --share FIELD (repeat) or --withdraw")
    cmd = c.RecordConsent(actor=actor(as_), share=frozenset(share or []), note=note)
    act(number, cmd, as_json)


@app.command("answer-referral")
def answer_referral(
    number: CaseArg,
    referral: Annotated[str, typer.Option(help="referral id, e.g. R6")],
    answer: Annotated[str, typer.Option(help="accepted | declined | completed | no_show")],
    reason: Annotated[str, typer.Option()] = "",
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a provider's answer taken by phone."""
    cmd = c.AnswerReferral.model_validate(
        {"actor": actor(as_), "referral_id": referral, "answer": answer, "reason": reason}
    )
    act(number, cmd, as_json)


@app.command("revoke-referral")
def revoke_referral(
    number: CaseArg,
    referral: Annotated[str, typer.Option(help="referral id, e.g. R6")],
    reason: Annotated[str, typer.Option()],
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a referral that is no longer wanted."""
    cmd = c.RevokeReferral(actor=actor(as_), referral_id=referral, reason=reason)
    act(number, cmd, as_json)


@app.command("schedule-follow-up")
def schedule_follow_up(
    number: CaseArg,
    kind: Annotated[str, typer.Option(help="check_in | home_visit | phone_call | appointment")],
    at: Annotated[str, typer.Option(help="when, ISO-8601 with a timezone, e.g. 2026-12-01T10:00:00+00:00")],
    provider: Annotated[str | None, typer.Option(help="for an appointment with a provider")] = None,
    invite_client: Annotated[
        bool, typer.Option("--invite-client", help="email the client an invitation")
    ] = False,
    note: Annotated[str, typer.Option()] = "",
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Schedule a follow-up; the case manager (and, if consented, the client) get an invitation."""
    cmd = c.ScheduleFollowUp.model_validate(
        {
            "actor": actor(as_),
            "kind": kind,
            "at": at,
            "provider": provider,
            "invite_client": invite_client,
            "note": note,
        }
    )
    act(number, cmd, as_json)


@app.command("follow-up-outcome")
def follow_up_outcome(
    number: CaseArg,
    follow_up: Annotated[str, typer.Option(help="follow-up id, e.g. F9")],
    outcome: Annotated[str, typer.Option(help="attended | missed | rescheduled")],
    notes: Annotated[str, typer.Option()] = "",
    rescheduled_to: Annotated[str | None, typer.Option(help="the new time, when rescheduled")] = None,
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record how a scheduled follow-up went."""
    cmd = c.RecordFollowUpOutcome.model_validate(
        {
            "actor": actor(as_),
            "follow_up_id": follow_up,
            "outcome": outcome,
            "notes": notes,
            "rescheduled_to": rescheduled_to,
        }
    )
    act(number, cmd, as_json)


def _progress(label: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err)
    task = bar.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def _report_outcome(outcome: Any, done: str, skipped: str) -> None:
    out.print(f"{len(outcome.done)} {done}, {len(outcome.skipped)} {skipped}, {len(outcome.failed)} failed")
    for where, why in outcome.failed:
        err.print(f"  {where}: {why}", highlight=False)
    if outcome.failed:
        raise Fail(f"{len(outcome.failed)} could not be done (listed above)")


@app.command()
def reassign(
    from_manager: Annotated[str, typer.Option("--from", help="the manager whose open cases move")],
    to_manager: Annotated[str, typer.Option("--to", help="the manager who takes them")],
    reason: Annotated[str, typer.Option()],
    as_: AsOption = None,
) -> None:
    """Reassign a manager's whole open caseload to another manager (supervisors only)."""
    from ops.bulk import reassign_caseload

    who = actor(as_)
    if who.role not in (Role.SUPERVISOR, Role.PROGRAM_LEAD):
        raise Fail("only a supervisor or program lead may reassign a caseload")
    bar, update = _progress(f"reassigning {from_manager} → {to_manager}")
    with bar:
        outcome = run(lambda ops: reassign_caseload(ops, who, from_manager, to_manager, reason, update))
    _report_outcome(outcome, "reassigned", "already theirs")


@app.command("import")
def import_csv(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV with columns "
            + ", ".join(("intake_reference", "given_name", "family_name", "program", "manager", "..."))
        ),
    ],
    as_: AsOption = None,
) -> None:
    """Open cases from a CSV file; bad rows are reported by row number, good ones opened once."""
    from ops.bulk import import_cases, read_rows

    who = actor(as_)
    try:
        read_rows(file)
    except (OSError, ValueError) as exc:
        raise Fail(str(exc)) from None
    bar, update = _progress(f"importing {file.name}")
    with bar:
        outcome = run(lambda ops: import_cases(ops, who, file, update))
    _report_outcome(outcome, "opened", "already open")


@app.command()
def demo(
    cases: Annotated[int, typer.Option(min=1, max=1000, help="how many cases")] = 12,
    seed: Annotated[int | None, typer.Option(help="the same seed gives the same mix")] = None,
) -> None:
    """Open realistic demo cases across programs and stages (the first: a woman arriving at a refuge)."""
    from ops.demo import open_demo_cases

    bar, update = _progress("opening demo cases")
    with bar:
        numbers = run(lambda ops: open_demo_cases(ops, cases, update, seed))
    out.print(f"opened {len(numbers)} demo cases: {', '.join(numbers[:5])}{' …' if len(numbers) > 5 else ''}")


@app.command("act")
def act_json(
    number: CaseArg,
    body: Annotated[str, typer.Argument(help='the command as JSON, e.g. \'{"action": "accept"}\'')],
    as_: AsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Any staff action as JSON (the same body the Temporal UI's `act` update takes)."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise Fail(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Fail("the command must be a JSON object")
    data.setdefault("actor", actor(as_).model_dump())
    cmd = c.STAFF_COMMAND.validate_python(data)
    act(number, cmd, as_json)


def main() -> None:
    code = 0
    try:
        result = app(standalone_mode=False)
        code = result if isinstance(result, int) else 0  # click returns an Exit's code here
    except Fail as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        code = 1
    except ValidationError as exc:  # a command built from flags that the domain's models refuse
        err.print(f"[red]error:[/red] {validation_message(exc)}", highlight=False)
        code = 1
    except typer.Abort:
        code = 130
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception as problem:  # click usage errors and anything unforeseen: still one line
        format_message = getattr(problem, "format_message", None)
        message = format_message() if callable(format_message) else str(problem)
        err.print(f"[red]error:[/red] {message}", highlight=False)
        code = getattr(problem, "exit_code", 1) or 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
