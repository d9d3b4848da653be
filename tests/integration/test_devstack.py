"""`casework dev` as a person runs it, and as it is sometimes stopped: killed outright, or
started where a Temporal already answers."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from devstack.mailsink import port_in_use
from tests.processes import background, casework, environment, free_port


def dev_environment(home: Path, port: int) -> dict[str, str]:
    api_port = free_port()
    return environment(
        var_dir=str(home / "var"),
        database_url=f"sqlite:///{home / 'var' / 'casework.db'}",
        temporal_address=f"127.0.0.1:{port}",
        smtp_port=str(free_port()),
        api_port=str(api_port),
        callback_url=f"http://127.0.0.1:{api_port}/callbacks/referrals",
    )


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def command_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_casework_dev_killed_outright_takes_its_temporal_server_with_it(tmp_path: Path) -> None:
    port = free_port()
    env = dev_environment(tmp_path, port)
    with background(
        ["dev", "--port", str(port), "--ui-port", str(free_port())],
        env,
        "Worker running",
        tmp_path / "dev.log",
    ) as dev:
        (server,) = [
            c for c in children(dev.pid) if "temporal" in command_of(c) and "start-dev" in command_of(c)
        ]
        dev.send_signal(signal.SIGKILL)
        dev.wait(timeout=10)
        deadline = time.monotonic() + 15
        while alive(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        try:
            assert not alive(server), "the Temporal dev server outlived the casework dev that started it"
            assert not port_in_use("127.0.0.1", port)
        finally:
            if alive(server):  # this test's failure must not leave a server behind
                os.kill(server, signal.SIGTERM)


def test_casework_dev_refuses_a_temporal_port_something_already_answers_on(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = dev_environment(tmp_path, port)
        started = time.monotonic()
        done = casework("dev", "--port", str(port), "--ui-port", str(free_port()), env=env, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert f"something already listens on 127.0.0.1:{port}" in said
    assert "Traceback" not in said
    assert time.monotonic() - started < 30  # at once, not after waiting for a server to come up
    assert not (tmp_path / "var").exists()  # nothing made: no key, so a later start still says what it must


def test_casework_dev_refuses_an_api_port_something_already_answers_on(tmp_path: Path) -> None:
    """Before, Temporal started, then the API failed to bind with a traceback."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        port = free_port()
        args = ("dev", "--port", str(port), "--ui-port", str(free_port()), "--api-port", str(taken))
        done = casework(*args, env=dev_environment(tmp_path, port), timeout=60)
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert f"something already listens on 127.0.0.1:{taken}, where casework dev starts the API" in said
    assert "--api-port" in said and "Traceback" not in said
    assert not port_in_use("127.0.0.1", port)  # no Temporal was started
    assert not (tmp_path / "var").exists()


def test_a_second_casework_dev_on_the_same_var_folder_is_refused(tmp_path: Path) -> None:
    """Two stacks on other ports but one var/ ran two Temporal servers on one database file."""
    (tmp_path / "var").mkdir()
    with (tmp_path / "var" / "dev.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running casework dev holds it
        held.write("pid 4242")
        held.flush()
        port = free_port()
        done = casework(
            "dev",
            "--port",
            str(port),
            "--ui-port",
            str(free_port()),
            env=dev_environment(tmp_path, port),
            timeout=60,
        )
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert f"another casework dev (pid 4242) runs on {tmp_path / 'var'}" in said
    assert not port_in_use("127.0.0.1", port)


def test_casework_dev_names_a_temporal_address_it_cannot_use(tmp_path: Path) -> None:
    env = dev_environment(tmp_path, free_port()) | {"CASEWORK_TEMPORAL_ADDRESS": "no-such-host.invalid:7233"}
    done = casework("dev", "--ui-port", str(free_port()), env=env, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot start Temporal at no-such-host.invalid:7233" in done.stdout + done.stderr


def test_the_api_of_casework_dev_answers_its_first_request_from_a_migrated_record(tmp_path: Path) -> None:
    """The API starts with the worker, which migrates the record at its start too: a request
    that came before the migration found no tables and got a 500."""
    port = free_port()
    env = dev_environment(tmp_path, port)
    api = f"http://127.0.0.1:{env['CASEWORK_API_PORT']}"
    # "Temporal UI:" is the first line it prints, before the API or the worker start
    with background(
        ["dev", "--port", str(port), "--ui-port", str(free_port())], env, "Temporal UI:", tmp_path / "dev.log"
    ):
        deadline = time.monotonic() + 60
        while True:
            try:
                first = httpx.get(f"{api}/cases", headers={"Authorization": "Bearer dev-alice"}, timeout=10)
                break
            except httpx.TransportError:  # not listening yet
                assert time.monotonic() < deadline, "the API never answered"
                time.sleep(0.01)
        assert first.status_code == 200, first.text
