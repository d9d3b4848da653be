"""Crash points for testing durability: die abruptly at a named place, once.

CASEWORK_FAILPOINT names the point and CASEWORK_FAILPOINT_MARKER a file that
records it fired, so the restarted worker runs on. Unset, this does nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def failpoint(name: str) -> None:
    if os.environ.get("CASEWORK_FAILPOINT") != name:
        return
    marker = Path(os.environ.get("CASEWORK_FAILPOINT_MARKER", f"/tmp/casework-failpoint-{name}"))
    if marker.exists():
        return
    marker.write_text(name)
    sys.stderr.write(f"failpoint {name}: exiting abruptly\n")
    sys.stderr.flush()
    os._exit(137)  # as if killed: no cleanup, no reply to Temporal
