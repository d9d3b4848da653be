"""Running casework itself as people do: `casework ...` subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

CASEWORK = str(Path(sys.executable).parent / "casework")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TEST_ACTOR_KEY = "a-key-for-the-test-suite-only"


def environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEWORK_")}
    env["CASEWORK_ACTOR_KEY"] = TEST_ACTOR_KEY
    # Never the sign-in of whoever runs the tests: `casework login` is tested with its own file.
    env["CASEWORK_CREDENTIALS_FILE"] = str(Path(tempfile.gettempdir()) / "casework-tests-never-signed-in")
    env.update({f"CASEWORK_{k.upper()}": v for k, v in settings.items()})
    env["COLUMNS"] = "200"  # rich tables: one line per row, so tests can read them
    return env


def casework(
    *args: str, env: Mapping[str, str], timeout: float = 60, input: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run `casework ARGS` to the end; `input` is what the person types."""
    return subprocess.run(
        [CASEWORK, *args], env=dict(env), capture_output=True, text=True, timeout=timeout, input=input
    )


@contextmanager
def background(
    args: list[str], env: Mapping[str, str], ready: str, log: Path, within: float = 90
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `casework ARGS`, wait until `ready` appears in its output, stop it with SIGTERM after."""
    with log.open("wb") as sink:
        proc = subprocess.Popen([CASEWORK, *args], env=dict(env), stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + within
        while ready not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                raise AssertionError(
                    f"casework {' '.join(args)} exited {proc.returncode}:\n{log.read_text()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"casework {' '.join(args)} not ready in {within}s:\n{log.read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
