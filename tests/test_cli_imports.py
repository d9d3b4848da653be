"""A staff command starts quickly: the CLI reaches the case service through the HTTP API, so
starting it loads neither the Temporal SDK nor the record's machinery (they took 1.2 s of its
2.4 s start on a loaded machine). Operator commands (`dev`, `worker`, `demo`) load them when run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_FOR_STAFF_COMMANDS = frozenset(
    {"temporalio", "sqlalchemy", "alembic", "store", "workflows", "activities", "matplotlib", "fastapi"}
)


def test_the_cli_starts_without_temporal_or_the_record() -> None:
    script = "import json, sys, cli.main; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    loaded = {name.split(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}
    assert not loaded & NOT_FOR_STAFF_COMMANDS, f"the CLI imports {sorted(loaded & NOT_FOR_STAFF_COMMANDS)}"
