"""Running casework itself as people do: `casework ...` subprocesses."""

from __future__ import annotations

import os
import random
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


# The servers tests start take ports below the kernel's ephemeral range (32768-60999 by default).
# A port found free by binding port 0 comes from that range, and until the server binds it any
# outgoing connection of any process (the suite runs in two, each with its servers and clients)
# may be given it as its local port. Below the range, only a server asking for that very port
# can take it: the other process picks at random among thousands, and a port it holds fails
# the bind here.
_GIVEN: set[int] = set()


def _below_ephemeral() -> range:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(10_000, low) if low > 12_000 else range(0)


def free_port() -> int:
    """A port no server listens on, for a server the test starts."""
    candidates = _below_ephemeral()
    for _ in range(200 if candidates else 0):
        port = random.choice(candidates)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket() as s:  # an unusual range: let the kernel choose
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
