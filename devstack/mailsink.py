"""A local mail sink for `casework dev`: an SMTP server that files each message in var/mail.

So a case worker trying casework on one machine sees every reminder, escalation,
referral and invitation as a .eml file, without a mail server.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class _FileEachMessage:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        (self.folder / f"{stamp}.eml").write_bytes(envelope.original_content or b"")
        return "250 Message accepted"


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def start_mail_sink(host: str, port: int, folder: Path) -> Controller | None:
    """Start the sink unless something already answers on host:port (then mail goes there)."""
    if port_in_use(host, port):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(_FileEachMessage(folder), hostname=host, port=port)
    controller.start()
    return controller
