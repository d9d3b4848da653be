"""The secrets and address of the answer links in referral emails (activities/answer_links.py):
the workers sign links when they write a referral email, the API checks them."""

from __future__ import annotations

import hashlib
import hmac

from config.settings import Settings
from config.temporal import actor_keys


def answer_link_secrets(settings: Settings) -> list[bytes]:
    """CASEWORK_ANSWER_LINK_SECRET (comma-separated: the first signs, all verify), else one derived
    from the actor key, which every casework process already shares (so `casework dev` has links
    without setup; rotating that key then ends the links sent before). Empty: no links."""
    if settings.answer_link_secret is not None:
        return [s.encode() for s in settings.answer_link_secret.get_secret_value().split(",") if s]
    keys = actor_keys(settings).keys
    return [hmac.new(keys[0], b"answer-links", hashlib.sha256).digest()] if keys else []


def public_url(settings: Settings) -> str:
    """Where people reach the API from outside: CASEWORK_PUBLIC_URL, else the callback's address."""
    return (settings.public_url or settings.callback_url.split("/callbacks/", 1)[0]).rstrip("/")
