"""The `casework` command: run the local stack, open cases, act on them, look at them.

Everything staff do goes through the HTTP API with the caller's credential (`casework login`,
or CASEWORK_API_KEY): the API key decides who acts, what they may see, and every read is
logged. The CLI never chooses an actor. Operator commands that touch no case (`dev`,
`worker`, `api`, `setup`) and the dev-only `demo` talk to Temporal and the record directly.

Each staff action is a subcommand generated from its command model in domain/commands.py
(see `action_command`): one declaration gives the CLI, the API route and the domain's rules.

Errors print one line and exit with the refusal's code (see EXIT_CODE). Every run leaves
through os._exit after flushing output: the Temporal SDK can abort at interpreter exit
(sdk-python#300), and a command that worked must not report a crash.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shlex
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from types import NoneType, UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.text import Text

from cli import hsds, render
from cli.apiclient import Api, ApiError, Credential, credential, forget_credential, save_credential
from config.settings import Settings
from domain import commands as c
from domain.commands import CASE_NUMBER, COMMAND_KEY_PATTERN, COMMAND_KEY_RULE, new_command_key
from domain.directory import DirectoryError, load_directory
from domain.errors import Refusal, explain
from domain.models import Actor, Client, RiskLevel, Stage
from domain.policy import Program, ProgramError, load_programs
from domain.views import CaseSummary, CaseView, Order, Receipt, Report
from service.refusals import EXIT_CODE, CaseError

if TYPE_CHECKING:  # loaded by the operator commands that use it (Temporal, the record): not by staff's
    from service.facade import CaseOps

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="casework: every client case a durable Temporal workflow.",
)
# No markup: what people typed (a note, a name, a refusal quoting them) is printed as they typed
# it. With Rich's markup on, "[mother]" vanished and "[/b]" made every read of the case fail.
out = Console(soft_wrap=True, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)
ERROR = Text("error:", style="red")
T = TypeVar("T")


# The numbers casework gives (a day and 4 hex digits; I- or K- and 10, from a reference or a key)
# are upper case: typed in lower case they are the same case.
ISSUED_NUMBER = re.compile(r"\d{6}-[0-9a-f]{4}|[ik]-[0-9a-f]{10}", re.IGNORECASE)


def case_number(value: str) -> str:
    """A case number as the API takes it, checked before it goes into a URL (`../me` is none)."""
    if not re.fullmatch(CASE_NUMBER, value):
        raise typer.BadParameter(
            f"{value!r} is not a case number (3 to 40 of A-Z a-z 0-9 -, e.g. 261126-4735)"
        )
    return value.upper() if ISSUED_NUMBER.fullmatch(value) else value


CaseArg = Annotated[str, typer.Argument(help="case number", callback=case_number)]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def exit_code(kind: str) -> int:
    """The exit code of a refusal kind (service/refusals.py); an API that cannot be reached is
    "unavailable": nothing was wrong with the command."""
    if kind == "unreachable":
        return EXIT_CODE[Refusal.UNAVAILABLE]
    return EXIT_CODE[Refusal(kind)] if kind in {r.value for r in Refusal} else 1


class Fail(Exception):
    """An error for the person at the terminal: printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def validation_message(exc: ValidationError) -> str:
    return "invalid input: " + explain(exc.errors())


# --- the API, with the caller's credential ----------------------------------------------


def call_api(work: Callable[[Api], T]) -> T:
    """Do the work through the API; every refusal becomes one line with its exit code."""
    try:
        api = Api(credential(Settings()))
    except ApiError as exc:
        raise Fail(exc.message, EXIT_CODE[Refusal.UNAUTHENTICATED]) from None
    try:
        return work(api)
    except ApiError as exc:
        raise Fail(f"{exc.kind.replace('_', ' ')}: {exc.message}", exit_code(exc.kind)) from None
    finally:
        api.close()


# The idempotency key of this invocation's command (`casework --key KEY ...` to retry one).
COMMAND_KEY: dict[str, str] = {}


@app.callback()
def options(
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="the command's idempotency key: give the key a timed-out command printed "
            "to retry it safely (it applies once); with `open`, the same key opens one case",
        ),
    ] = None,
) -> None:
    if key is not None and not re.fullmatch(COMMAND_KEY_PATTERN, key):
        raise Fail(f"--key {key!r}: a key is {COMMAND_KEY_RULE}", EXIT_CODE[Refusal.BAD_REQUEST])
    COMMAND_KEY["key"] = key or new_command_key()
    if key is not None:  # `open` sends only a key given: a case opened with one is numbered from it
        COMMAND_KEY["given"] = key


def retry_line(key: str, args: list[str]) -> str:
    """The command again with its key, quoted for the shell so it can be pasted as printed."""
    rest, skip = [], False
    for arg in args:  # the key given before, if any, is the one printed first
        if skip or arg == "--key" or arg.startswith("--key="):
            skip = arg == "--key"
            continue
        rest.append(arg)
    return shlex.join(["casework", "--key", key, *rest])


def send_action(number: str, action: str, body: dict[str, Any], as_json: bool) -> None:
    """POST the action to the case; a command no worker took in time prints its retry line."""
    key = COMMAND_KEY.get("key") or new_command_key()
    path = f"/cases/{number}/{action.replace('_', '-')}"
    try:
        _, done = call_api(lambda api: api.post(path, body, key=key))
    except Fail as failed:
        if failed.code == EXIT_CODE[Refusal.UNAVAILABLE] and "same idempotency key" in str(failed):
            raise Fail(f"{failed} Retry: {retry_line(key, sys.argv[1:])}", failed.code) from None
        raise
    receipt = Receipt.model_validate(done)
    if as_json:
        out.print_json(receipt.model_dump_json())
    else:
        out.print(render.receipt(receipt))


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise Fail(f"{path}: {exc}", EXIT_CODE[Refusal.BAD_REQUEST]) from None


# --- running the stack (operators: no case access) ---------------------------------


@app.command()
def dev(
    port: Annotated[
        int | None, typer.Option(help="Temporal frontend port [CASEWORK_TEMPORAL_ADDRESS's: 7233]")
    ] = None,
    ui_port: Annotated[int | None, typer.Option(help="Temporal Web UI port [CASEWORK_UI_PORT: 8233]")] = None,
    api_port: Annotated[int | None, typer.Option(help="the API's port [CASEWORK_API_PORT: 8000]")] = None,
) -> None:
    """Start a local Temporal dev server (data under ./var), the worker, the API and a mail sink."""
    from devstack.run import DevStackError, run_dev

    try:
        asyncio.run(run_dev(dev_settings(port, ui_port, api_port), announce=out.print))
    except DevStackError as exc:
        raise Fail(str(exc)) from None


def dev_settings(port: int | None, ui_port: int | None, api_port: int | None = None) -> Settings:
    """The settings `casework dev` runs with: the environment's, the options given over them.
    (The options' own defaults once replaced CASEWORK_TEMPORAL_ADDRESS and CASEWORK_UI_PORT.)"""
    given: dict[str, Any] = {}
    if port is not None:
        host = Settings().temporal_address.rpartition(":")[0] or "127.0.0.1"
        given["temporal_address"] = f"{host}:{port}"
    if ui_port is not None:
        given["ui_port"] = ui_port
    if api_port is not None:  # the callback and answer links follow it (unless set apart)
        given["api_port"] = api_port
    return Settings(**given)


def api_settings(host: str | None, port: int | None) -> Settings:
    """The settings `casework api` serves with: the options over the environment's, so what
    follows the API's address (the callback, the answer links) follows the options too."""
    given: dict[str, Any] = {}
    if host is not None:
        given["api_host"] = host
    if port is not None:
        given["api_port"] = port
    return Settings(**given)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="default CASEWORK_API_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default CASEWORK_API_PORT or 8000")] = None,
) -> None:
    """Serve the HTTP API (the provider callback) against CASEWORK_TEMPORAL_ADDRESS."""
    from api.app import connected_app, serve
    from config.logs import configure_logging
    from devstack.run import run_until_signalled

    settings = api_settings(host, port)
    configure_logging(settings.log_level)

    async def go(stop: asyncio.Event) -> None:
        try:
            app_ = await connected_app(settings)
        except Exception as exc:
            raise Fail(f"cannot start the API: {exc}") from None
        out.print(f"API: http://{settings.api_host}:{settings.api_port}/docs")
        await serve(app_, settings.api_host, settings.api_port, stop)

    asyncio.run(run_until_signalled(go))


@app.command()
def worker() -> None:
    """Run a worker against CASEWORK_TEMPORAL_ADDRESS (default 127.0.0.1:7233)."""
    from config.logs import configure_logging
    from devstack.run import run_until_signalled
    from worker import run_worker

    settings = Settings()
    configure_logging(settings.log_level)
    asyncio.run(run_until_signalled(lambda stop: run_worker(settings, stop)))


@app.command()
def setup() -> None:
    """Prepare a Temporal namespace and the record store: search attributes, migrations. Idempotent."""
    from config.temporal import connect, register_search_attributes
    from store.db import migrate_url

    settings = Settings()

    async def go() -> None:
        try:
            client = await asyncio.wait_for(connect(settings), timeout=30)
        except Exception as exc:
            raise Fail(f"cannot reach Temporal at {settings.temporal_address} ({exc})") from None
        await register_search_attributes(client, settings.temporal_namespace)
        await migrate_url(settings.database_url)

    asyncio.run(go())
    out.print(f"search attributes registered on {settings.temporal_address}; record store migrated")


@app.command("rotate-master-key")
def rotate_master_key() -> None:
    """Re-wrap every client's data key with the first master key (an operator's command). Put the
    new key first in CASEWORK_PAYLOAD_KEY ("new,old"), run this, then drop the old one: data keys
    do not change, so nothing in Temporal or the record is re-encrypted."""
    from config.temporal import key_ring
    from store.db import engine, migrate
    from store.keys import Rewrapped

    settings = Settings()

    async def go() -> Rewrapped:
        eng = engine(settings.database_url)
        try:
            await migrate(eng)
            keys = key_ring(settings, eng)
            if not keys.encrypting:
                raise Fail("no master key is configured (CASEWORK_PAYLOAD_KEY or var/payload.key)")

            def progress(done: int, total: int) -> None:
                out.print(f"re-wrapped {done} of {total}", highlight=False)

            return await keys.rewrap(progress)
        finally:
            await eng.dispose()

    result = asyncio.run(go())
    out.print(f"{result.done} data keys now wrapped by the first master key", highlight=False)
    if result.stranded:
        left = ", ".join(f"{n} by {master_id}" for master_id, n in sorted(result.stranded.items()))
        raise Fail(f"left as they were, wrapped by master keys not given: {left}")


@app.command("backfill-obligations")
def backfill_obligations_command() -> None:
    """Give open cases recorded before the overdue report existed their obligation rows, from
    each case's recorded state and its program (an operator's command, once after upgrading).
    Safe to run again: it looks only at open cases that have none."""
    from config.temporal import key_ring
    from domain.policy import load_programs
    from service.backfill import Backfilled, backfill_obligations
    from store.db import engine, migrate

    settings = Settings()

    async def go() -> Backfilled:
        eng = engine(settings.database_url)
        try:
            await migrate(eng)
            programs = load_programs(settings.programs_dir)

            def progress(seen: int) -> None:
                out.print(f"looked at {seen} open cases without obligation rows", highlight=False)

            return await backfill_obligations(eng, key_ring(settings, eng), programs, progress)
        finally:
            await eng.dispose()

    result = asyncio.run(go())
    out.print(
        f"{result.projected} cases given their obligation rows ({result.owing} owe something now)",
        highlight=False,
    )
    for reason, numbers in sorted(result.skipped.items()):
        shown = ", ".join(numbers[:10]) + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
        out.print(f"left {len(numbers)}: {reason}: {shown}", highlight=False)
    if result.skipped:
        raise Fail("some open cases were left without obligation rows (see above)")


@app.command()
def demo(
    cases: Annotated[int, typer.Option(min=1, max=1000, help="how many cases")] = 12,
    seed: Annotated[int | None, typer.Option(help="the same seed gives the same mix")] = None,
) -> None:
    """Seed a development stack with demo cases (an operator's command: it needs the stack's
    actor key, and acts as the demo staff alice, bob and sam)."""
    from devstack.demo import open_demo_cases

    bar, update = _progress("opening demo cases")
    with bar:
        numbers = run_direct(lambda ops: open_demo_cases(ops, cases, update, seed))
    out.print(f"opened {len(numbers)} demo cases: {', '.join(numbers[:5])}{' …' if len(numbers) > 5 else ''}")


def run_direct(work: Callable[[CaseOps], Awaitable[T]]) -> T:
    """For operator commands only: the case service against Temporal, signed with the actor key."""
    settings = Settings()

    async def go() -> T:
        from config.temporal import connect
        from service.facade import CaseOps
        from store.db import engine

        try:
            programs = load_programs(settings.programs_dir)
            directory = load_directory(settings.directory_dir)
        except (ProgramError, DirectoryError) as exc:
            raise Fail(str(exc)) from None
        try:
            client = await asyncio.wait_for(connect(settings), timeout=10)
        except Exception as exc:  # connection refused, DNS, TLS: all mean the same here
            raise Fail(
                f"cannot reach Temporal at {settings.temporal_address} ({exc}); is `casework dev` running?",
                EXIT_CODE[Refusal.UNAVAILABLE],
            ) from None
        record = engine(settings.database_url)
        try:
            timeout = timedelta(seconds=settings.command_timeout)
            return await work(CaseOps(client, programs, settings.task_queue, directory, record, timeout))
        finally:
            await record.dispose()

    try:
        return asyncio.run(go())
    except CaseError as exc:
        raise Fail(f"{exc.kind.replace('_', ' ')}: {exc.message}", exit_code(exc.kind)) from None


@app.command()
def providers() -> None:
    """List the providers referrals can go to, with their services and channel."""
    try:
        found = load_directory(Settings().directory_dir)
    except DirectoryError as exc:
        raise Fail(str(exc)) from None
    out.print(render.providers_table(list(found.providers.values())))


@app.command("import-hsds")
def import_hsds(
    source: Annotated[Path, typer.Argument(help="an Open Referral HSDS 3.0 JSON document")],
    out_file: Annotated[
        Path, typer.Option("--out", help="the providers file to write, e.g. directory/providers.toml")
    ],
    taxonomy: Annotated[
        Path | None,
        typer.Option(help="term -> service type table (default: the directory's hsds_taxonomy.toml)"),
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="overwrite --out if it exists")] = False,
) -> None:
    """Import providers from an HSDS directory (an operator command: it writes a file, nothing else)."""
    if out_file.exists() and not replace:
        raise Fail(f"{out_file} exists: pass --replace to overwrite it")
    try:
        table = hsds.load_taxonomy(taxonomy or Settings().directory_dir / "hsds_taxonomy.toml")
        found = hsds.import_hsds(hsds.load_hsds(source), table)
    except hsds.HsdsError as exc:
        raise Fail(str(exc)) from None
    out_file.write_text(hsds.providers_toml(found, source.name), encoding="utf-8")
    out.print(f"imported {len(found.providers)} providers to {out_file}")
    for line in found.unmapped:
        out.print(f"unmapped service: {line}")
    for line in found.skipped:
        out.print(f"skipped: {line}")


@app.command()
def vocabulary() -> None:
    """List the need domains (and the SSM score) and service types cases are described in."""
    try:
        found = load_directory(Settings().directory_dir)
    except DirectoryError as exc:
        raise Fail(str(exc)) from None
    out.print(render.vocabulary(found))


@app.command()
def programs() -> None:
    """List the programs cases can be opened in, as the API's deployment runs them."""
    found = call_api(lambda api: api.get("/programs"))
    out.print(render.programs_table([Program.model_validate(p) for p in found]))


# --- signing in ----------------------------------------------------------------------


@app.command()
def login(
    api_url: Annotated[
        str | None,
        typer.Option("--api", help="the API's address (default CASEWORK_API_URL or the local stack)"),
    ] = None,
) -> None:
    """Sign in with your API key (asked for, or read from stdin); it is checked, then saved for you only."""
    from cli.apiclient import local_api_url

    settings = Settings()
    url = api_url or settings.api_url or local_api_url(settings)
    key = typer.prompt("API key", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline()
    key = key.strip()
    if not key:
        raise Fail("no API key given", EXIT_CODE[Refusal.BAD_REQUEST])
    cred = Credential(api_url=url, api_key=key)
    api = Api(cred, timeout=15)
    try:
        who = Actor.model_validate(api.get("/me"))
    except ApiError as exc:
        raise Fail(f"{exc.kind.replace('_', ' ')}: {exc.message}", exit_code(exc.kind)) from None
    finally:
        api.close()
    path = save_credential(settings, cred)
    out.print(f"signed in to {url} as {who.id} ({who.role.value}); saved in {path}")


@app.command()
def logout() -> None:
    """Forget the saved sign-in."""
    gone = forget_credential(Settings())
    out.print("signed out" if gone else "not signed in")


@app.command()
def whoami() -> None:
    """Who the API says you are."""
    who = Actor.model_validate(call_api(lambda api: api.get("/me")))
    out.print(f"{who.id} ({who.role.value})")


# --- opening and looking at cases -----------------------------------------------


@app.command("open")
def open_case(
    program: Annotated[str, typer.Option(help="program key, see `casework programs`")] = "general",
    manager: Annotated[str | None, typer.Option(help="case manager id (default: you)")] = None,
    supervisor: Annotated[str | None, typer.Option()] = None,
    given_name: Annotated[str | None, typer.Option()] = None,
    family_name: Annotated[str | None, typer.Option()] = None,
    birth_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    email: Annotated[str | None, typer.Option()] = None,
    risk: Annotated[RiskLevel, typer.Option(help="risk at intake screening")] = RiskLevel.LOW,
    intake_reference: Annotated[
        str | None, typer.Option(help="the same reference never opens a second case")
    ] = None,
    client_json: Annotated[Path | None, typer.Option("--client-json", help="client details as JSON")] = None,
    note: Annotated[str, typer.Option()] = "",
    as_json: JsonOption = False,
) -> None:
    """Open a case: client details from flags or --client-json."""
    details: dict[str, Any] = load_json(client_json) if client_json else {}
    flags = {
        "given_name": given_name,
        "family_name": family_name,
        "birth_date": birth_date,
        "phone": phone,
        "email": email,
    }
    details |= {k: v for k, v in flags.items() if v is not None}
    try:
        Client.model_validate(details)  # a clear line before anything is sent
    except ValidationError as exc:
        said = explain([e | {"loc": ("client", *e["loc"])} for e in exc.errors()])
        raise Fail(f"{Refusal.VALIDATION.value}: {said}", EXIT_CODE[Refusal.VALIDATION]) from None
    body = {
        "program": program,
        "client": details,
        "manager": manager,
        "supervisor": supervisor,
        "risk": risk.value,
        "intake_reference": intake_reference,
        "note": note,
    }
    status, data = call_api(lambda api: api.post("/cases", body, key=COMMAND_KEY.get("given")))
    view = CaseView.model_validate(data)
    if as_json:
        out.print_json(view.model_dump_json())
    else:
        again = "same intake reference" if intake_reference else "same key"
        opened = "opened case" if status == 201 else f"already open ({again}): case"
        out.print(
            f"{opened} {view.case.number} in {view.case.program} · manager {view.case.manager}"
            f" · next due {render.when(view.next_deadline)}"
        )


@app.command()
def show(number: CaseArg, as_json: JsonOption = False) -> None:
    """Show a case: stage, people, deadlines, overdue items, plan, referrals, recent events."""

    def read(api: Api) -> tuple[CaseView, list[Any], list[Any]]:
        view = CaseView.model_validate(api.get(f"/cases/{number}"))
        if as_json:
            return view, [], []
        events = api.get(f"/cases/{number}/events", after=max(0, view.seq - 8))["items"]
        notes = api.get(f"/cases/{number}/notes", limit=5)["items"]
        return view, events, notes

    view, events, notes = call_api(read)
    if as_json:
        out.print_json(view.model_dump_json())
    else:
        from domain.events import Event
        from domain.models import Note

        render.case(
            out, view, [Event.model_validate(e) for e in events], [Note.model_validate(n) for n in notes]
        )


def event_pages(api: Api, number: str, after: int, limit: int | None) -> Iterator[dict[str, Any]]:
    """The case's events after `after`, oldest first, a page at a time from the record."""
    sent = 0
    while limit is None or sent < limit:
        page = api.get(f"/cases/{number}/events", after=after, limit=500)
        for item in page["items"]:
            if limit is not None and sent >= limit:
                return
            sent += 1
            yield item
        if page["next_after"] is None:
            return
        after = page["next_after"]


@app.command()
def history(
    number: CaseArg,
    after: Annotated[int, typer.Option(min=0, help="only events after this seq")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many (default: all)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every event of a case from the record, oldest first: who did what, when."""
    from domain.events import Event

    events = call_api(lambda api: list(event_pages(api, number, after, limit)))
    if as_json:
        out.print_json(json.dumps(events))
    else:
        out.print(render.events_table([Event.model_validate(e) for e in events]))


@app.command()
def notes(
    number: CaseArg,
    before: Annotated[int | None, typer.Option(min=1, help="only notes of events before this seq")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    as_json: JsonOption = False,
) -> None:
    """A case's notes from the record, newest first (page back with --before)."""
    from domain.models import Note

    page = call_api(lambda api: api.get(f"/cases/{number}/notes", before=before, limit=limit))
    found = [(seq, Note.model_validate(n)) for seq, n in zip(page["seqs"], page["items"], strict=True)]
    if as_json:
        out.print_json(json.dumps([{"seq": seq, **n.model_dump(mode="json")} for seq, n in found]))
        return
    for seq, note in found:
        out.print(f"#{seq} {render.when(note.at)} {note.author}: {note.text}", highlight=False)
    if page["next_before"] is not None:
        out.print(f"(older: casework notes {number} --before {page['next_before']})")


@app.command()
def restore(
    number: CaseArg,
    reason: Annotated[str, typer.Option(help="why the case is started again")],
    as_json: JsonOption = False,
) -> None:
    """Start a case again from the record after Temporal lost its workflow (supervisors)."""
    _, data = call_api(lambda api: api.post(f"/cases/{number}/restore", {"reason": reason}))
    view = CaseView.model_validate(data)
    if as_json:
        out.print_json(view.model_dump_json())
    else:
        out.print(
            f"case {number} restored at event #{view.seq} · stage {view.case.stage.value}"
            + (f" · next due {render.when(view.next_deadline)}" if view.next_deadline else "")
        )


@app.command("export-client")
def export_client(
    number: CaseArg,
    out_dir: Annotated[Path, typer.Option("--out", help="the folder to write the export into")],
) -> None:
    """Everything held about a case's client, for a subject access request (supervisors and
    program leads): CASE-export.json and a printable CASE-export.html. Each is logged."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / f"{number}-export.{kind}" for kind in ("json", "html")]

    def fetch(api: Api) -> None:
        for path in files:
            api.download(f"/cases/{number}/export", path, format=path.suffix.removeprefix("."))

    call_api(fetch)
    out.print(f"wrote {files[0]} and {files[1]}", highlight=False)


@app.command("erase-client")
def erase_client(
    number: CaseArg,
    reason: Annotated[str, typer.Option(help="why, e.g. the client's request of 2026-11-02 (no names)")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    as_json: JsonOption = False,
) -> None:
    """Erase a closed case's client for good (program leads): nothing about them can be read
    any more, in Temporal's history or the record; the case's facts stay for statistics."""
    if not yes:
        # Read the case first: a case out of reach or mistyped is refused before the question,
        # and the question names whose data goes (a read the access log keeps, as for `show`).
        view = CaseView.model_validate(call_api(lambda api: api.get(f"/cases/{number}")))
        whose = f"{view.case.client.display_name}, {view.case.stage.value}"
        if not typer.confirm(
            f"Erase the client of case {number} ({whose})? This cannot be undone", default=False, err=True
        ):
            raise typer.Exit(1)
    _, data = call_api(lambda api: api.post(f"/cases/{number}/erase", {"reason": reason}))
    if as_json:
        out.print_json(json.dumps(data))
        return
    again = " (it had been erased before)" if data["repeated"] else ""
    out.print(f"case {number}: client data erased by {data['erased_by']}{again}", highlight=False)


def case_pages(api: Api, limit: int, **filters: Any) -> list[CaseSummary]:
    rows: list[CaseSummary] = []
    token = None
    while len(rows) < limit:
        page = api.get("/cases", page_size=min(100, limit - len(rows)), page_token=token, **filters)
        rows += [CaseSummary.model_validate(r) for r in page["items"]]
        token = page["next_page_token"]
        if token is None:
            break
    return rows


@app.command("list")
def list_cases(
    stage: Annotated[Stage | None, typer.Option()] = None,
    manager: Annotated[str | None, typer.Option()] = None,
    program: Annotated[str | None, typer.Option()] = None,
    risk: Annotated[RiskLevel | None, typer.Option()] = None,
    overdue: Annotated[bool | None, typer.Option("--overdue/--not-overdue")] = None,
    closed: Annotated[
        bool, typer.Option("--closed", "--archived", help="include closed cases (erased ones too)")
    ] = False,
    sort: Annotated[
        Order, typer.Option(help="next_due: soonest due first, nothing due last; newest: newest opened first")
    ] = "next_due",
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 200,
    as_json: JsonOption = False,
) -> None:
    """List the cases you may see, from the record: open ones, soonest due first (no personal data)."""
    filters = {
        "stage": stage.value if stage else None,
        "manager": manager,
        "program": program,
        "risk": risk.value if risk else None,
        "overdue": None if overdue is None else str(overdue).lower(),
        "closed": "true" if closed else None,
        "sort": sort,
    }
    rows = call_api(lambda api: case_pages(api, limit, **filters))
    if as_json:
        out.print_json(json.dumps([r.model_dump(mode="json") for r in rows]))
    else:
        out.print(render.list_table(rows))


REPORTS = ("caseload", "overdue", "referrals", "stages", "weekly")


@app.command()
def report(
    csv_dir: Annotated[
        Path | None, typer.Option("--csv", help="also write each report as CSV into this folder")
    ] = None,
    chart: Annotated[
        Path | None, typer.Option(help="write a PNG of open cases by stage, week by week")
    ] = None,
) -> None:
    """Caseload, overdue items, referral outcomes, time in stage, cases per week (supervisors, leads)."""

    def fetch(api: Api) -> tuple[dict[str, Report], dict[str, bytes], bytes | None]:
        reports = {}
        for name in REPORTS:
            data = api.get(f"/reports/{name}")
            as_of = datetime.fromisoformat(data["as_of"]) if data.get("as_of") else None
            rows = [tuple(r) for r in data["rows"]]
            reports[name] = Report(data["title"], tuple(data["columns"]), rows, as_of)
        csvs = {name: api.get_bytes(f"/reports/{name}", format="csv") for name in REPORTS} if csv_dir else {}
        return reports, csvs, api.get_bytes("/charts/stages.png") if chart else None

    reports, csvs, png = call_api(fetch)
    for rep in reports.values():
        out.print(render.report_table(rep))
    if csv_dir is not None:
        csv_dir.mkdir(parents=True, exist_ok=True)
        for name, data in csvs.items():
            (csv_dir / f"{name}.csv").write_bytes(data)
        out.print(f"CSV files written to {csv_dir}")
    if chart is not None and png is not None:
        chart.write_bytes(png)
        out.print(f"chart written to {chart}")


# --- staff actions, one subcommand per command model -------------------------------------


def _without_none(annotation: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of an annotation like `X | None`."""
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        return (args[0] if len(args) == 1 else str), len(args) < len(get_args(annotation))
    return annotation, False


def _choices(kind: Any) -> list[str]:
    if get_origin(kind) is Literal:
        return [a.value if isinstance(a, Enum) else str(a) for a in get_args(kind)]
    if isinstance(kind, type) and issubclass(kind, Enum):
        return [str(m.value) for m in kind]
    return []


def _is_list(kind: Any) -> bool:
    return get_origin(kind) in (list, set, frozenset)


def option_name(name: str, info: FieldInfo) -> str:
    """`--need` for `needs`, `--met` where the model says so, `--to-manager` for `to_manager`."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "option" in extra:
        return str(extra["option"])
    kind, _ = _without_none(info.annotation)
    if _is_list(kind) and name.endswith("s") and not name.endswith("ss"):
        name = name[:-1]
    return name.replace("_", "-")


def _help(info: FieldInfo, kind: Any) -> str:
    parts = [info.description or ""]
    inner = get_args(kind)[0] if _is_list(kind) else kind
    if choices := _choices(inner):
        parts.append(" | ".join(choices))
    if isinstance(inner, type) and issubclass(inner, BaseModel) and inner.__doc__:
        parts.append(inner.__doc__.strip().splitlines()[0])
    if _is_list(kind):
        parts.append("repeat for more")
    return "; ".join(p for p in parts if p)


def _option(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


# (the typer parameter, the field's path in the request body, how its value goes in the body)
Spec = tuple[inspect.Parameter, str, Literal["value", "list", "empty", "json"]]


def _parameters(model: type[BaseModel], prefix: str = "") -> Iterator[Spec]:
    """Typer options for a model's fields. A nested model's fields become options of their
    own, with `--from-json` for the whole of it."""
    for name, info in model.model_fields.items():
        if name in ("actor", "action"):
            continue
        kind, _ = _without_none(info.annotation)
        path, ident = prefix + name, (prefix + name).replace(".", "__")
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from _parameters(kind, prefix=f"{name}.")
            whole = typer.Option("--from-json", help=f"the whole {name} as a JSON file")
            yield _option(f"{ident}_json", Annotated[Path | None, whole]), path, "json"
            continue
        flag, help_ = option_name(name, info), _help(info, kind)
        if kind is bool:
            yield (
                _option(ident, Annotated[bool, typer.Option(f"--{flag}/--no-{flag}", help=help_)], False),
                path,
                "value",
            )
        elif _is_list(kind):
            yield (
                _option(ident, Annotated[list[str] | None, typer.Option(f"--{flag}", help=help_)]),
                path,
                "list",
            )
            if _empty_means_something(info):  # e.g. share nothing, or withdraw consent
                none = typer.Option(f"--no-{flag}", help=f"no {name.replace('_', ' ')} at all")
                yield _option(f"no_{ident}", Annotated[bool, none], False), path, "empty"
        elif info.is_required() and not prefix:  # nested fields may come from --from-json instead
            yield (
                _option(
                    ident, Annotated[str, typer.Option(f"--{flag}", help=help_)], inspect.Parameter.empty
                ),
                path,
                "value",
            )
        else:
            yield _option(ident, Annotated[str | None, typer.Option(f"--{flag}", help=help_)]), path, "value"


def _empty_means_something(info: FieldInfo) -> bool:
    """A list that may be empty on purpose: required, or not empty by default."""
    if any(getattr(rule, "min_length", 0) for rule in info.metadata):
        return False
    return info.is_required() or bool(info.get_default(call_default_factory=True))


def _body(specs: list[Spec], values: dict[str, Any]) -> dict[str, Any]:
    """The request body from the options given: nested paths become nested objects."""
    body: dict[str, Any] = {}
    for param, path, how in specs:
        value = values[param.name]
        if how == "json":
            if value is not None:
                body[path] = load_json(value)
            continue
        if how == "empty":
            if value:
                body[path] = []
            continue
        if value is None or (how == "list" and not value):
            continue
        head, _, leaf = path.rpartition(".")
        target = body.setdefault(head, {}) if head else body
        if isinstance(target, dict):  # a nested object given whole by --from-json wins
            target[leaf] = value
    return body


def action_command(model: type[BaseModel]) -> Callable[..., None]:
    """The subcommand for one staff action, built from its command model."""
    action = str(model.model_fields["action"].default)
    specs = list(_parameters(model))
    number = inspect.Parameter("number", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=CaseArg)
    as_json = inspect.Parameter(
        "as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOption
    )
    params = [number] + [p for p, _, _ in specs] + [as_json]

    def command(**values: Any) -> None:
        send_action(values.pop("number"), action, _body(specs, values), values.pop("as_json"))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = (model.__doc__ or action).strip()
    command.__name__ = action
    return command


for _model in c.STAFF_COMMAND_TYPES:
    app.command(str(_model.model_fields["action"].default).replace("_", "-"))(action_command(_model))


@app.command("act")
def act_json(
    number: CaseArg,
    body: Annotated[str, typer.Argument(help='the command as JSON, e.g. \'{"action": "accept"}\'')],
    as_json: JsonOption = False,
) -> None:
    """Any staff action as JSON: {"action": ..., the action's fields} (you are the actor)."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise Fail(f"not JSON: {exc}", EXIT_CODE[Refusal.BAD_REQUEST]) from None
    if not isinstance(data, dict) or not isinstance(data.get("action"), str):
        raise Fail('the command must be a JSON object with an "action"', EXIT_CODE[Refusal.BAD_REQUEST])
    action = data.pop("action")
    if action not in c.STAFF_ACTIONS:
        raise Fail(
            f"unknown action {action!r} (known: {', '.join(c.STAFF_ACTIONS)})", EXIT_CODE[Refusal.BAD_REQUEST]
        )
    send_action(number, action, data, as_json)


# --- bulk work, with progress ---------------------------------------------------------


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
) -> None:
    """Reassign a manager's whole open caseload to another manager (supervisors, program leads)."""
    from cli.bulk import reassign_caseload
    from domain.access import may_reassign

    def reassign_all(api: Api) -> Any:
        me = Actor.model_validate(api.get("/me"))
        programs = {p["key"]: Program.model_validate(p) for p in api.get("/programs")}  # the deployment's
        if refusal := may_reassign(me, from_manager, to_manager, programs):
            raise ApiError(Refusal.FORBIDDEN, refusal)  # the API would refuse each case alike
        return reassign_caseload(api, from_manager, to_manager, reason, update)

    bar, update = _progress(f"reassigning {from_manager} → {to_manager}")
    with bar:
        outcome = call_api(reassign_all)
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
) -> None:
    """Open cases from a CSV file; bad rows are reported by row number, good ones opened once."""
    from cli.bulk import import_cases, read_rows

    try:
        rows = read_rows(file)
    except (OSError, ValueError) as exc:
        raise Fail(str(exc), EXIT_CODE[Refusal.BAD_REQUEST]) from None
    bar, update = _progress(f"importing {file.name}")
    with bar:
        outcome = call_api(lambda api: import_cases(api, rows, update))
    _report_outcome(outcome, "opened", "already open")


def main() -> None:
    # Everything casework writes (databases, mail files, keys, reports) is for its owner only:
    # client data must not be readable by other users of the machine.
    os.umask(0o077)
    code = 0
    try:
        result = app(standalone_mode=False)
        code = result if isinstance(result, int) else 0  # click returns an Exit's code here
    except Fail as exc:
        err.print(ERROR, f"{exc}", highlight=False)
        code = exc.code
    except ValidationError as exc:  # a command built from flags that the domain's models refuse
        err.print(ERROR, f"{validation_message(exc)}", highlight=False)
        code = EXIT_CODE[Refusal.VALIDATION]
    except typer.Abort:
        code = 130
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception as problem:  # click usage errors and anything unforeseen: still one line
        format_message = getattr(problem, "format_message", None)
        message = format_message() if callable(format_message) else str(problem)
        err.print(ERROR, f"{message}", highlight=False)
        code = getattr(problem, "exit_code", 1) or 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
