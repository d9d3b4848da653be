"""Delivery channels: email over SMTP and signed JSON webhooks over HTTP.

Each channel sorts failures into two kinds, because that decides retrying:
transient (timeouts, refused connections, SMTP 4xx, HTTP 408/429/5xx) are raised as
TransientDelivery and Temporal retries with backoff; permanent (SMTP 5xx, a bad
address, other HTTP 4xx, missing configuration) are raised as PermanentDelivery and
nobody retries: the case manager is told instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib
import httpx

from activities.signing import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature


class TransientDelivery(Exception):
    """Worth trying again later."""


class PermanentDelivery(Exception):
    """Will not work however often it is tried."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str  # none | starttls | tls
    username: str | None
    password: str | None
    timeout: float
    sender: str


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: str
    mime: str  # e.g. "text/calendar"


_HOSTNAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")


def message_id(key: str, sender: str) -> str:
    """The Message-ID of the delivery `key`: the same on every attempt, and a valid RFC 5322
    msg-id whatever characters the key has (`<` SHA-256 hex prefix `@` the sender's domain `>`).

    Nothing else (time, process, randomness) goes in, so a receiver can drop the duplicate
    sent again after a worker died between sending and recording.
    """
    local = hashlib.sha256(key.encode()).hexdigest()[:32]  # 128 bits: keeps the header line short
    return f"<{local}@{_domain(sender)}>"


def _domain(sender: str) -> str:
    """The sender address's domain if it is a plain host name (IDNA-encoded), else "casework"."""
    _, at, domain = parseaddr(sender)[1].rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "casework"
    return domain if at and _HOSTNAME.fullmatch(domain) else "casework"


def email_message(
    sender: str, to: str, subject: str, body: str, key: str, attachment: Attachment | None = None
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = formatdate(usegmt=True)  # required (RFC 5322 3.6): when this attempt sends it
    msg["Message-ID"] = message_id(key, sender)
    msg["X-Casework-Delivery"] = key
    msg.set_content(body)
    if attachment is not None:
        maintype, _, subtype = attachment.mime.partition("/")
        msg.add_attachment(
            attachment.content.encode(),
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
            params={"method": calendar_method(attachment.content)},
        )
    return msg


def calendar_method(ics: str) -> str:
    """The iTIP method of a calendar attachment (REQUEST, CANCEL), for its Content-Type."""
    found = re.search(r"^METHOD:([A-Z-]+)\r?$", ics, re.MULTILINE)
    return found.group(1) if found else "REQUEST"


async def send_email(config: SmtpConfig, msg: EmailMessage) -> str:
    try:
        errors, response = await aiosmtplib.send(
            msg,
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.security == "tls",
            start_tls=config.security == "starttls",
            timeout=config.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients[0]
        raise PermanentDelivery(
            f"recipient {refused.recipient} refused: {refused.code} {refused.message}"
        ) from exc
    except aiosmtplib.SMTPResponseException as exc:
        kind = PermanentDelivery if exc.code >= 500 else TransientDelivery
        raise kind(f"SMTP {exc.code}: {exc.message}") from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise TransientDelivery(f"SMTP server {config.host}:{config.port} unavailable: {exc}") from exc
    if errors:
        raise PermanentDelivery(f"recipients refused: {errors}")
    return response


async def post_webhook(
    url: str, secret: str, payload: dict[str, object], key: str, wait_s: float = 15.0
) -> str:
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        DELIVERY_HEADER: key,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: signature(secret, stamp, body),
    }
    try:
        async with httpx.AsyncClient(timeout=wait_s) as client:
            response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise TransientDelivery(f"{url} unreachable: {exc!r}") from exc
    code = response.status_code
    if 200 <= code < 300:
        return f"HTTP {code}"
    detail = f"HTTP {code} from {url}: {response.text[:200]}"
    if code in (408, 429) or code >= 500:
        raise TransientDelivery(detail)
    raise PermanentDelivery(detail)
