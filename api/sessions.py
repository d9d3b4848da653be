"""Sign-in for the Temporal UI's decoder: a person gives their API key once at the API's
/signin and gets a session cookie, which the UI sends with every codec request.

The cookie is a signed, expiring token naming the actor (HMAC-SHA256 with a secret of the
API, like the page tokens). It is accepted by the codec endpoints only: the rest of the API
changes cases and takes the API key alone, so a cookie can never be ridden to act (CSRF).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from html import escape

from domain.models import Actor

COOKIE = "casework_session"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionTokens:
    def __init__(self, secret: bytes, ttl: timedelta) -> None:
        # A key of its own, so a session token can never pass for a page token or back.
        self._key = hmac.new(secret, b"casework-session", hashlib.sha256).digest()
        self.ttl = ttl

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def seal(self, actor: Actor, now: datetime) -> str:
        claims = {"actor": actor.id, "role": actor.role.value, "exp": int((now + self.ttl).timestamp())}
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def open(self, token: str, now: datetime) -> Actor | None:
        """The actor the token names, or None if it is forged, malformed or expired."""
        body, _, mac = token.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        try:
            claims = json.loads(_unb64(body))
            if int(claims["exp"]) <= now.timestamp():
                return None
            return Actor(id=claims["actor"], role=claims["role"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None


def signin_page(message: str = "", ui_url: str | None = None) -> str:
    note = f"<p><strong>{escape(message)}</strong></p>" if message else ""
    ui = f'<p>Then open the <a href="{escape(ui_url)}">Temporal UI</a>.</p>' if ui_url else ""
    return _page(
        "Sign in",
        f"""{note}
<p>Sign in with your API key to see your cases' client data in the Temporal UI.</p>
<form method="post" action="/signin">
  <label for="key">API key</label>
  <input id="key" name="key" type="password" autocomplete="current-password" required autofocus>
  <button type="submit">Sign in</button>
</form>{ui}""",
    )


def signed_in_page(actor: Actor, ui_url: str | None) -> str:
    ui = f'<p><a href="{escape(ui_url)}">Open the Temporal UI</a>.</p>' if ui_url else ""
    return _page(
        "Signed in",
        f"""<p id="signed-in">Signed in as {escape(actor.id)} ({escape(actor.role.value)}).
The Temporal UI now shows client data of the cases you may see.</p>{ui}
<p><a href="/signout">Sign out</a></p>""",
    )


def signed_out_page() -> str:
    return _page("Signed out", '<p>Signed out.</p><p><a href="/signin">Sign in</a></p>')


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>casework · {escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto">
<h1>casework · {escape(title)}</h1>
{body}
</body></html>
"""
