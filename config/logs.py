"""JSON logs for everything: our structlog loggers and stdlib ones (temporalio, sqlalchemy).

Logs never carry client personal data: log case numbers, stages and actor ids.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

# An email address, wherever a log line might carry one (an SMTP server's refusal quotes the
# recipient, a library logs whom it talks to): the last guard of "no client data in logs".
ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
KEPT = frozenset({"key", "message_id"})  # delivery keys and Message-IDs: ours, not a person's


def redact_addresses(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name, value in event.items():
        if name not in KEPT and isinstance(value, str) and "@" in value:
            event[name] = ADDRESS.sub("<address>", value)
    return event


_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
    redact_addresses,
]


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=str),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The dev stack's mail sink (aiosmtpd) logs each connection, sender and recipient at INFO:
    # recipients are people's addresses, clients' included. Only its problems are logged.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
