"""How a benchmark process ends: with its own exit status, never the SDK's abort.

A process that used the Temporal SDK can abort at interpreter exit with code 134 ("Fatal
Python error: PyGILState_Release", sdk-python#300; the CLI and the suite leave the same way).
A benchmark's tables are printed by then, but a script running it would read a crash."""

from __future__ import annotations

import asyncio
import os
import sys
import traceback
from collections.abc import Coroutine
from typing import Any, NoReturn


def run_and_leave(main: Coroutine[Any, Any, Any]) -> NoReturn:
    """Run `main` to its end, flush what was printed, and exit: 0 if it returned, 1 if it
    raised (its traceback printed), 130 if interrupted."""
    code = 0
    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        code = 130
    except Exception:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
