"""The answer page: where a provider with no system of its own answers a referral, from the
signed link in the referral email (activities/answer_links.py makes the links).

GET /answer/{token} shows the referral (case number, service, reason, and only the client data
the referral shared) and a form; POST applies the answer through the case service as the
provider, with an idempotency key taken from the token. Which answers a link offers, when it is
used up and when it expires are domain rules (domain/answer_links.py). Plain HTML that works
without JavaScript; never cached, never sent on as a referrer, never framed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from html import escape
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from activities.answer_links import AnswerLinks, LinkClaims, command_key
from activities.messages import shared_client_data
from domain.answer_links import LinkState, LinkStep, link_state
from domain.commands import AnswerReferral
from domain.errors import Refusal, explain
from domain.models import Actor, Case, Referral, ReferralAnswer, Role
from service.facade import CaseOps
from service.refusals import HTTP_STATUS, CaseError

LogAccess = Callable[[Actor, str, str], Awaitable[None]]

HEADERS = {
    "Cache-Control": "no-store",  # client data: never kept by a browser or a proxy
    "Referrer-Policy": "no-referrer",  # the link is a credential: never sent on to another site
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}

# What each answer means, in the provider's words; the value sent is ReferralAnswer's word.
ANSWER_LABELS = {
    ReferralAnswer.ACCEPTED: "Accept: we take the client on",
    ReferralAnswer.DECLINED: "Decline: we cannot take the client on (say why below)",
    ReferralAnswer.COMPLETED: "Completed: the service was given",
    ReferralAnswer.NO_SHOW: "No-show: the client did not come",
}

# How each way a link cannot be used is answered: (HTTP status, page title).
REFUSED = {
    "unknown": (404, "Link not valid"),
    "answered": (409, "Already answered"),
    "closed": (409, "Case closed"),
    "expired": (410, "Link expired"),
}
NOT_VALID = "This link is not valid. Check that the whole address from the email was opened."
ASK_REFERRER = "If you still need to answer, contact the service that sent you the referral."


def add_answer_routes(app: FastAPI, links: AnswerLinks, ops: CaseOps, log_access: LogAccess) -> None:
    async def look(token: str) -> tuple[LinkClaims, Case, LinkState] | HTMLResponse:
        """What the token names and what it may do now, or the page saying why it cannot."""
        claims = links.open(token)
        if claims is None:
            return refused_page("unknown", NOT_VALID)
        try:
            case = (await ops.view(claims.case)).case
        except CaseError as exc:
            if exc.kind is Refusal.NOT_FOUND:
                return refused_page("unknown", NOT_VALID)
            return page(HTTP_STATUS[exc.kind], "Cannot answer now", f"<p>{escape(exc.message)}</p>")
        state = link_state(case, claims.referral, claims.step, ops.programs[case.program], await ops.clock())
        if state.verdict != "open":
            return refused_page(state.verdict, state.message)
        return claims, case, state

    @app.get("/answer/{token}", include_in_schema=False)
    async def answer_form(token: str) -> HTMLResponse:
        found = await look(token)
        if isinstance(found, HTMLResponse):
            return found
        _, case, state = found
        assert state.referral is not None
        await log_access(provider_of(state.referral), case.number, "answer link")
        return page(200, "Answer a referral", referral_section(case, state) + answer_form_html(state))

    @app.post("/answer/{token}", include_in_schema=False)
    async def give_answer(token: str, request: Request) -> HTMLResponse:
        found = await look(token)
        if isinstance(found, HTMLResponse):
            return found
        claims, case, state = found
        assert state.referral is not None
        # whatever the POST answers (the form again, or what was recorded) shows the referral
        await log_access(provider_of(state.referral), case.number, "answer link")
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        reason = form.get("reason", "")
        try:
            answer = ReferralAnswer(form.get("answer", ""))
            if answer not in state.answers:
                raise ValueError
        except ValueError:
            return again(case, state, "Choose one of the answers.", reason)
        try:
            command = AnswerReferral(
                actor=provider_of(state.referral), referral_id=claims.referral, answer=answer, reason=reason
            )
        except ValidationError as exc:
            return again(case, state, explain(exc.errors()).removeprefix("input: "), reason)
        try:
            done = await ops.act(claims.case, command, key=command_key(token))
        except CaseError as exc:
            if exc.kind is Refusal.CONFLICT:  # the link gave another answer before: that one stands
                said = f"<p>This link has already answered referral {escape(claims.referral)} on case "
                said += f"{escape(claims.case)}; a second answer is not recorded. To change the answer, "
                return page(409, "Already answered", said + "ask the case manager.</p>")
            return page(HTTP_STATUS[exc.kind], "Not recorded", f"<p>{escape(exc.message)}</p>")
        status = done.referral.status if done.referral else answer.status
        body = f'<p id="answered">Thank you: referral {escape(claims.referral)} on case '
        body += f"{escape(claims.case)} is now <strong>{escape(status.value)}</strong>.</p>"
        if answer is ReferralAnswer.ACCEPTED:
            outcome = links.url(claims.case, claims.referral, LinkStep.OUTCOME)
            body += (
                "<p>Once the service is given, or if the client does not come, tell us at this "
                f'link (keep it; it is for you alone): <a id="outcome-link" href="{escape(outcome)}">'
                "report the outcome</a>.</p>"
            )
        return page(200, "Answer recorded", body)


def provider_of(referral: Referral) -> Actor:
    """Who answers through a link: the provider the referral was made to."""
    return Actor(id=referral.provider, role=Role.PROVIDER)


def again(case: Case, state: LinkState, problem: str, reason: str) -> HTMLResponse:
    """The form once more, saying what to fix (nothing was recorded)."""
    note = f'<p id="problem" role="alert"><strong>Not sent: {escape(problem)}</strong></p>'
    body = note + referral_section(case, state) + answer_form_html(state, reason)
    return page(422, "Answer a referral", body)


def referral_section(case: Case, state: LinkState) -> str:
    referral = state.referral
    assert referral is not None
    facts = [
        ("Case", case.number),
        ("Referral", referral.id),
        ("Service", referral.service.replace("_", " ")),
        ("Reason", referral.reason),
        ("Referred on", _when(referral.requested_at)),
    ]
    if state.expires is not None:
        facts.append(("Answer by", _when(state.expires)))
    shared = shared_client_data(case.client, case, referral.shared)
    client = [(k.replace("_", " ").capitalize(), "" if v is None else str(v)) for k, v in shared.items()]
    return (
        _definitions("referral", facts)
        + "<h2>The client</h2>"
        + (_definitions("client", client) if client else "<p>No client details were shared.</p>")
    )


def answer_form_html(state: LinkState, reason: str = "") -> str:
    choices = "".join(
        f'<div><input type="radio" id="answer-{a.value}" name="answer" value="{a.value}" required>'
        f' <label for="answer-{a.value}">{escape(ANSWER_LABELS[a])}</label></div>'
        for a in state.answers
    )
    return f"""<form method="post">
<fieldset><legend>Your answer</legend>{choices}</fieldset>
<p><label for="reason">Reason or note (needed to decline)</label><br>
<textarea id="reason" name="reason" rows="4" cols="40" maxlength="4000">{escape(reason)}</textarea></p>
<p><button type="submit">Send answer</button></p>
</form>"""


def refused_page(verdict: str, message: str) -> HTMLResponse:
    status, title = REFUSED[verdict]
    return page(status, title, f'<p id="refused">{escape(message.rstrip("."))}.</p><p>{ASK_REFERRER}</p>')


def page(status: int, title: str, body: str) -> HTMLResponse:
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>casework · {escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 36rem; margin: 2rem auto; padding: 0 1rem">
<main><h1>{escape(title)}</h1>
{body}
</main></body></html>
"""
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _definitions(name: str, items: list[tuple[str, str]]) -> str:
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    return f'<dl id="{name}">{rows}</dl>'


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"
