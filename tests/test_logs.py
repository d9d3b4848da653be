"""Logs carry no one's address: whatever a library or an SMTP refusal puts in a line, an email
address comes out as <address>; delivery keys and Message-IDs stay (they name our messages)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from config.logs import configure_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    before, level = root.handlers[:], root.level
    sink = io.StringIO()
    configure_logging("INFO", sink)
    yield sink
    root.handlers[:] = before
    root.setLevel(level)
    structlog.reset_defaults()


def test_an_smtp_refusal_quoting_the_client_address_is_logged_without_it(captured: io.StringIO) -> None:
    structlog.get_logger("casework.deliveries").warning(
        "delivery will be retried",
        error="550 5.1.1 <rosa.quist@client.example.org>: mailbox unavailable",
        key="T-1:invitation:F5:client",
    )
    logging.getLogger("some.library").warning("connected to mx for rosa.quist@client.example.org")
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert "rosa.quist" not in captured.getvalue()
    assert lines[0]["error"] == "550 5.1.1 <<address>>: mailbox unavailable"
    assert lines[0]["key"] == "T-1:invitation:F5:client"
    assert lines[1]["event"] == "connected to mx for <address>"
