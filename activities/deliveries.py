"""Delivering outbox messages: each message once in effect, every attempt on the record.

The workflow runs `deliver_message` for each message its events produced. The
activity looks the message up by its idempotency key; if it is already delivered it
sends nothing (a retried activity, or a worker that died after recording the
delivery). Otherwise it records the attempt, sends through the recipient's channel,
and records the outcome. The key travels with the message (a Message-ID derived from
it alone, the X-Casework-Delivery header) so a receiver can drop the one duplicate that
remains possible: a worker that dies after sending but before its SQL write. Its attempt
stays `sending` until the next attempt of the key starts and marks it `interrupted`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import (
    Attachment,
    PermanentDelivery,
    SmtpConfig,
    TransientDelivery,
    email_message,
    post_webhook,
    send_email,
)
from activities.contracts import DeliveryOutcome
from activities.failpoints import failpoint
from domain.directory import Directory, EmailChannel
from store.db import writing
from store.keys import ClientErased, KeyRing, Sealer, opened_message
from store.tables import delivery_attempts, outbox

log = structlog.get_logger("casework.deliveries")
PERMANENT = "PermanentDeliveryError"
INTERRUPTED = "the worker stopped during this attempt: no outcome was recorded before the next one began"


class Deliverer:
    def __init__(
        self, engine: AsyncEngine, directory: Directory, smtp: SmtpConfig, keys: KeyRing | None = None
    ) -> None:
        self.engine, self.directory, self.smtp = engine, directory, smtp
        self.keys = keys if keys is not None else KeyRing(engine, None)

    @activity.defn(name="deliver_message")
    async def deliver(self, key: str, attempts_before: int = 0) -> DeliveryOutcome:
        """`attempts_before`: attempts of earlier rounds (the workflow retries in rounds, so it
        hears of failing attempts early), so attempts are numbered across rounds."""
        try:
            message, sealer = await self._message(key)
        except ClientErased as exc:  # erased after the message was written: nothing to send
            return DeliveryOutcome(delivered=False, detail=str(exc))
        if message["status"] == "delivered":
            log.info("already delivered", key=key, case=message["case_number"])
            return DeliveryOutcome(delivered=True, detail="already delivered")
        if message["status"] == "failed":
            return DeliveryOutcome(delivered=False, detail=message["last_error"] or "failed")
        attempt = attempts_before + activity.info().attempt
        try:
            channel, address, send = self._route(message)
        except PermanentDelivery as exc:
            await self._finish(key, None, "failed", str(exc), attempt, sealer)
            raise ApplicationError(str(exc), type=PERMANENT, non_retryable=True) from None
        attempt_id = await self._start(key, attempt, channel, address, sealer)
        try:
            detail = await send()
        except PermanentDelivery as exc:
            await self._finish(key, attempt_id, "failed", str(exc), attempt, sealer)
            log.warning("delivery failed for good", key=key, case=message["case_number"], error=str(exc))
            raise ApplicationError(str(exc), type=PERMANENT, non_retryable=True) from None
        except TransientDelivery as exc:
            await self._finish(key, attempt_id, "retrying", str(exc), attempt, sealer)
            log.info(
                "delivery will be retried",
                key=key,
                case=message["case_number"],
                attempt=attempt,
                error=str(exc),
            )
            raise
        failpoint("delivery-sent")  # crash tests: sent, not yet recorded
        await self._finish(key, attempt_id, "delivered", detail, attempt, sealer)
        failpoint("delivery-recorded")  # crash tests: recorded in SQL, not yet in Temporal
        log.info("delivered", key=key, case=message["case_number"], channel=channel, attempt=attempt)
        return DeliveryOutcome(delivered=True, detail=detail)

    def _route(self, message: dict[str, Any]) -> tuple[str, str, Any]:
        """Where the message goes, and a coroutine factory that sends it."""
        attachment = (
            Attachment("invitation.ics", message["attachment"], "text/calendar")
            if message["attachment"]
            else None
        )
        role, recipient = message["recipient_role"], message["recipient"]
        if role == "provider":
            provider = self.directory.provider(recipient)
            if provider is None:
                raise PermanentDelivery(f"provider {recipient!r} is not in the directory")
            if isinstance(provider.channel, EmailChannel):
                address = str(provider.channel.address)
            else:
                url, secret = str(provider.channel.url), os.environ.get(provider.channel.secret_env)
                if not secret:
                    raise PermanentDelivery(f"no webhook secret: set {provider.channel.secret_env}")
                payload = message["payload"] or {"type": message["kind"], "body": message["body"]}
                return "webhook", url, lambda: post_webhook(url, secret, payload, message["idempotency_key"])
        elif role == "client":
            address = recipient
        else:
            address = self.directory.staff_email(recipient)
        msg = email_message(
            self.smtp.sender,
            address,
            message["subject"],
            message["body"],
            message["idempotency_key"],
            attachment,
        )
        return "email", address, lambda: send_email(self.smtp, msg)

    async def _message(self, key: str) -> tuple[dict[str, Any], Sealer]:
        """The message with its sealed fields opened, and the sealer for what its attempts write."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(outbox).where(outbox.c.idempotency_key == key))).one_or_none()
        if row is None:  # recorded before this activity is scheduled, so this is a bug
            raise ApplicationError(f"no outbox message {key}", type="MissingMessage", non_retryable=True)
        message = opened_message(dict(row._mapping), await self.keys.opener(row.case_number))
        return message, await self.keys.sealer(row.case_number)  # the key before the writes need it

    async def _start(self, key: str, attempt: int, channel: str, address: str, sealer: Sealer) -> int:
        address = sealer.text(address, "delivery_attempts.address") or ""
        async with writing(self.engine) as conn:
            await _mark_interrupted(conn, key)
            result = await conn.execute(
                insert(delivery_attempts).values(
                    idempotency_key=key,
                    attempt=attempt,
                    channel=channel,
                    address=address,
                    started_at=datetime.now(UTC),
                    outcome="sending",
                    detail="",
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    async def _finish(
        self, key: str, attempt_id: int | None, outcome: str, detail: str, attempt: int, sealer: Sealer
    ) -> None:
        now = datetime.now(UTC)
        error = None if outcome == "delivered" else sealer.text(detail[:2000], "outbox.last_error")
        detail = sealer.text(detail[:2000], "delivery_attempts.detail") or ""
        status = {"delivered": "delivered", "failed": "failed", "retrying": "pending"}[outcome]
        async with writing(self.engine) as conn:
            if attempt_id is None:  # refused before sending (no route): no attempt row of its own
                await _mark_interrupted(conn, key)
            else:
                await conn.execute(
                    update(delivery_attempts)
                    .where(delivery_attempts.c.id == attempt_id)
                    .values(finished_at=now, outcome=outcome, detail=detail)
                )
            await conn.execute(
                update(outbox)
                .where(outbox.c.idempotency_key == key)
                .values(
                    status=status,
                    attempts=attempt,
                    last_error=error,
                    delivered_at=now if outcome == "delivered" else None,
                )
            )


async def _mark_interrupted(conn: AsyncConnection, key: str) -> None:
    """Mark the attempts of `key` still `sending` `interrupted`, before a new attempt is written
    and in its transaction. Temporal starts a new attempt only once the last one failed or timed
    out, so one still `sending` never recorded its outcome: its worker died (or hung) between
    sending and recording. Whether its message left is not known; `finished_at` stays empty.
    (A hung worker that wakes up and finishes overwrites this with what really happened.)"""
    await conn.execute(
        update(delivery_attempts)
        .where(delivery_attempts.c.idempotency_key == key, delivery_attempts.c.outcome == "sending")
        .values(outcome="interrupted", detail=INTERRUPTED)
    )
