"""Signed answer links: the address in a referral email where a provider without a system of its
own answers in a browser (served by the API, api/answer_page.py).

A token names a case, a referral and a step (domain/answer_links.py), and carries an HMAC-SHA256
of them under a server secret (CASEWORK_ANSWER_LINK_SECRET, or derived from the actor key), so
only casework can make one. Nothing is stored: a token is the same each time it is made for the
same step (a retried recording writes the same email), whether it is used up or expired is read
off the live case, and the secret never leaves casework's processes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from domain.answer_links import LinkStep
from domain.models import Case, Referral

ANSWER_PATH = "/answer/"
_PURPOSE = b"casework-answer-link"  # a key of its own: a link's MAC never passes for anything else
_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class LinkClaims:
    case: str
    referral: str
    step: LinkStep


class AnswerLinks:
    """Makes and checks tokens. `secrets`: the first signs, all verify (to rotate)."""

    def __init__(self, secrets: Sequence[bytes], base_url: str) -> None:
        if not secrets:
            raise ValueError("answer links need at least one secret")
        self._keys = [hmac.new(s, _PURPOSE, hashlib.sha256).digest() for s in secrets]
        self.base_url = base_url.rstrip("/")

    def _mac(self, key: bytes, body: str) -> str:
        return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest()[:_MAC_BYTES])

    def token(self, case: str, referral: str, step: LinkStep) -> str:
        body = _b64(f"{case}\n{referral}\n{step.value}".encode())
        return f"{body}.{self._mac(self._keys[0], body)}"

    def url(self, case: str, referral: str, step: LinkStep) -> str:
        return f"{self.base_url}{ANSWER_PATH}{self.token(case, referral, step)}"

    def open(self, token: str) -> LinkClaims | None:
        """What the token names, or None unless casework signed it."""
        body, _, mac = token.partition(".")
        if not any(hmac.compare_digest(mac.encode(), self._mac(k, body).encode()) for k in self._keys):
            return None
        try:
            case, referral, step = _unb64(body).decode().split("\n")
            return LinkClaims(case=case, referral=referral, step=LinkStep(step))
        except (ValueError, binascii.Error):
            return None


def command_key(token: str) -> str:
    """The idempotency key of the answer given through a token: a double submit applies once."""
    return f"answer-link:{hashlib.sha256(token.encode()).hexdigest()[:32]}"


def answer_link_lines(links: AnswerLinks | None, case: Case, referral: Referral) -> list[str]:
    """The lines of a referral email that give the provider its answer link (none if links are off)."""
    if links is None:
        return []
    return [
        "",
        "No system to answer with? Answer in your browser (accepted, or declined with a reason):",
        links.url(case.number, referral.id, LinkStep.RESPOND),
        "The link is for you alone: it works once, until the answer deadline.",
    ]
