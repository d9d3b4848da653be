"""Rich renderings of cases for the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from domain.directory import Directory, EmailChannel, Provider
from domain.events import Event, NoticeIssued
from domain.models import SSM_SCALE, Note, Stage
from domain.policy import Program, human
from domain.views import CaseSummary, CaseView, Receipt, Report
from domain.vocabulary import Terms


def when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "—"


def receipt(done: Receipt) -> str:
    """One line for a command that was applied (or had been, for a retried key)."""
    what = (
        f"{done.action} done" if not done.repeated else f"{done.action} had already been done (#{done.seq})"
    )
    made = {"refer": f" · referral R{done.seq}", "schedule_follow_up": f" · follow-up F{done.seq}"}
    # what the command ended with it (a withdrawal revokes referrals, cancels follow-ups): the
    # summary's tail after the stage (domain.events.Event.describe)
    _, _, ended = done.summary.partition("]; ")
    return (
        f"case {done.number}: {what} · stage {done.stage.value}"
        + made.get(done.action, "")  # a repeat's seq is the first answer's: the same id
        + (f" · {ended}" if ended else "")
        + (f" · next due {when(done.next_deadline)}" if done.next_deadline else "")
    )


def case(console: Console, view: CaseView, events: Sequence[Event], notes: Sequence[Note] = ()) -> None:
    c = view.case
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    stage = f"{c.stage.value} (held from {c.held_from.value})" if c.held_from else c.stage.value
    contact = " · ".join(str(v) for v in (c.client.phone, c.client.email, c.client.address) if v)
    rows = [
        ("Client", c.client.display_name),
        ("Contact", contact or "—"),
        ("Program", c.program),
        ("Stage", stage),
        ("Manager", c.manager + (f" · supervisor {c.supervisor}" if c.supervisor else "")),
        ("Risk", c.risk.value),
        ("Opened", when(c.opened_at)),
        ("Next due", when(view.next_deadline)),
        ("Next action", f"{nxt.kind} at {when(nxt.at)}" if (nxt := view.next_action) else "—"),
        ("Can do", ", ".join(view.allowed_actions) or "—"),
    ]
    if c.outcome:
        rows.append(("Outcome", f"{c.outcome.value} {c.close_reason}".strip()))
    rows += [("Failing", f"{f.kind}: {f.describe()}") for f in view.failing_deliveries]
    if view.status != "running":  # say plainly when Temporal no longer runs the case
        hint = {
            "archived": "reopen window passed",
            "erased": "the client's data was erased: only the case's facts remain",
        }.get(view.status, f"casework restore {c.number}")
        rows.insert(3, ("Workflow", f"{view.status} ({hint})"))
    for label, value in rows:
        facts.add_row(label, value)
    parts: list[object] = [facts]
    if view.overdue:
        overdue = Table(title="Overdue", title_style="bold red", expand=False)
        for col in ("what", "due", "escalation"):
            overdue.add_column(col)
        for item in view.overdue:
            level = "—" if item.level is None else f"level {item.level} → {item.notified}"
            overdue.add_row(item.what, when(item.due), level)
        parts.append(overdue)
    if c.plan:
        plan = Table(title=f"Plan ({c.plan.status.value})", expand=False)
        for col in ("goal", "objective", "target", "status"):
            plan.add_column(col)
        for g in c.plan.goals:
            plan.add_row(f"{g.id}: {g.description}", g.objective, g.target_date.isoformat(), g.status.value)
        parts.append(plan)
    if c.referrals:
        refs = Table(title="Referrals", expand=False)
        for col in ("id", "service", "provider", "status", "asked", "shared"):
            refs.add_column(col)
        for r in c.referrals:
            shared = ", ".join(sorted(s.value for s in r.shared)) or "nothing"
            if r.consent_override:
                shared += " (override)"
            refs.add_row(r.id, r.service, r.provider, r.status.value, when(r.requested_at), shared)
        parts.append(refs)
    if c.follow_ups:
        follow = Table(title="Follow-ups", expand=False)
        for col in ("id", "kind", "when", "status", "notes"):
            follow.add_column(col)
        for f in c.follow_ups[-8:]:
            follow.add_row(f.id, f.kind.value, when(f.due_at), f.status.value, f.summary)
        parts.append(follow)
    if c.consent:
        shares = ", ".join(sorted(s.value for s in c.consent.share)) or "nothing (withdrawn)"
        facts.add_row("Consent", f"{shares} · {when(c.consent.recorded_at)} by {c.consent.recorded_by.id}")
    if notes:
        recent = Table(title=f"Recent notes (casework notes {c.number})", expand=False)
        for col in ("when", "by", "note"):
            recent.add_column(col)
        for note in notes:
            recent.add_row(when(note.at), note.author.id, note.text[:200])
        parts.append(recent)
    parts.append(events_table(list(events)[-8:], title=f"Recent events (of {view.seq})"))
    console.print(Panel(Group(*parts), title=f"Case {c.number}", expand=False))  # type: ignore[arg-type]


def events_table(events: Sequence[Event], title: str = "Events") -> Table:
    table = Table(title=title, expand=False)
    for col in ("#", "when", "action", "by", "stage"):
        table.add_column(col)
    for e in events:
        moved = (
            f"{e.stage_before.value} → {e.stage_after.value}"
            if e.stage_before and e.stage_before != e.stage_after
            else e.stage_after.value
        )
        table.add_row(str(e.seq), when(e.at), _action(e), str(e.actor), moved)
    return table


def _action(e: Event) -> str:
    ch = e.change
    if isinstance(ch, NoticeIssued):
        level = f" L{ch.level}" if ch.kind == "escalation" else ""
        return f"{ch.kind}{level} ({ch.obligation}) → {ch.recipient}"
    return e.action  # an erased client's event: "add_note (erased)"


def list_table(rows: Sequence[CaseSummary]) -> Table:
    table = Table(title=f"{len(rows)} case(s)", expand=False)
    # the case number is what a reader copies: never cut, the other columns wrap instead
    table.add_column("case", no_wrap=True, min_width=max((len(r.number) for r in rows), default=4))
    for col in ("stage", "manager", "program", "risk", "next due", "overdue"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.number,
            r.stage if r.status != "erased" else f"{r.stage} (erased)",
            r.manager,
            r.program,
            r.risk,
            when(r.next_due),
            Text("yes", style="red") if r.overdue else "",
        )
    return table


def programs_table(programs: Sequence[Program]) -> Table:
    table = Table(title="Programs", expand=False)
    for col in ("key", "name", "intake", "assessment", "planning", "follow-up every", "reopen window"):
        table.add_column(col)
    for p in programs:
        d = p.deadlines
        table.add_row(
            p.key,
            p.name,
            *(human(d[s]) for s in (Stage.INTAKE, Stage.ASSESSMENT, Stage.PLANNING)),
            human(p.monitoring.follow_up_every),
            human(p.reopen_window),
        )
    return table


def providers_table(providers: Sequence[Provider]) -> Table:
    table = Table(title="Providers", expand=False)
    for col in ("id", "name", "services", "channel", "answers within"):
        table.add_column(col)
    for p in providers:
        ch = p.channel
        where = f"email {ch.address}" if isinstance(ch, EmailChannel) else f"webhook {ch.url}"
        table.add_row(
            p.id,
            p.name,
            ", ".join(sorted(p.services)),
            where,
            human(p.response_time) if p.response_time else "program default",
        )
    return table


def vocabulary(directory: Directory) -> Group:
    """The need domains (with the SSM scale) and service types, with who offers each service."""
    offered: dict[str, list[str]] = {}
    for p in directory.providers.values():
        for service in p.services:
            offered.setdefault(service, []).append(p.id)
    scale = Table(title="SSM score (--need DOMAIN:SCORE/5)", expand=False)
    scale.add_column("score")
    scale.add_column("meaning")
    for score, meaning in SSM_SCALE.items():
        scale.add_row(str(score), meaning)
    need_domains = _terms_table("Need domains", directory.vocabulary.need_domains)
    return Group(
        need_domains, scale, _terms_table("Service types", directory.vocabulary.service_types, offered)
    )


def _terms_table(title: str, terms: Terms, offered: dict[str, list[str]] | None = None) -> Table:
    """One row per term; with `offered`, the providers offering each (a service type)."""
    table = Table(title=title, expand=False)
    for col in ("slug", "label", "aliases", *(["offered by"] if offered is not None else [])):
        table.add_column(col)
    for slug in terms.slugs():
        term = terms.terms[slug]
        providers = [", ".join(sorted(offered.get(slug, []))) or "—"] if offered is not None else []
        table.add_row(slug, term.label, ", ".join(sorted(term.aliases)), *providers)
    return table


def report_table(report: Report) -> Table:
    caption = f"as of {report.as_of:%Y-%m-%d %H:%M} UTC" if report.as_of else None
    table = Table(title=report.title, caption=caption, expand=False)
    for col in report.columns:
        table.add_column(col.replace("_", " "))
    for row in report.rows:
        table.add_row(*("—" if v is None else str(v) for v in row))
    if not report.rows:
        table.add_row(*(["(none)"] + [""] * (len(report.columns) - 1)))
    return table
