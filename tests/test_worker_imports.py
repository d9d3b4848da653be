"""The worker loads only what it runs: no API, CLI, dev stack, charts or FHIR models. Each
module imported is memory every worker process holds, whatever its caseload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Top-level packages the worker has no use for (the API, the CLI and their libraries).
NOT_IN_A_WORKER = frozenset(
    {
        "api",
        "cli",
        "devstack",
        "service",
        "bench",
        "tests",
        "fastapi",
        "starlette",
        "uvicorn",
        "typer",
        "matplotlib",
        "numpy",
        "PIL",
        "fhir",
        "swagger_ui_bundle",
        "transitions",
        "playwright",
    }
)


def modules_after_importing_worker() -> set[str]:
    script = "import json, sys, worker; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_worker_imports_nothing_it_does_not_run() -> None:
    loaded = {name.split(".")[0] for name in modules_after_importing_worker()}
    assert not loaded & NOT_IN_A_WORKER, f"the worker imports {sorted(loaded & NOT_IN_A_WORKER)}"


def test_a_worker_writes_the_bytecode_of_what_the_sandbox_imports_for_every_case() -> None:
    """Even where Python is told not to write bytecode (PYTHONDONTWRITEBYTECODE): otherwise the
    sandbox compiles workflows/case.py from source for every case a worker loads."""
    script = (
        "import importlib.util, json, os, worker, workflows.case as m\n"
        "cached = importlib.util.cache_from_source(m.__file__)\n"
        "if os.path.exists(cached): os.remove(cached)\n"
        "worker.workflow_runner()\n"
        "print(json.dumps(os.path.exists(cached)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert json.loads(done.stdout.splitlines()[-1]) is True
