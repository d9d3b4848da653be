"""The HTTP API: cases for operations staff and other systems, and the provider callback.

Every staff action is an endpoint taking the same command model as the CLI (the actor
comes from the API key, never the body). Errors are RFC 9457 problem details with the
domain's message: 400 bad request, 401 no or unknown key, 403 forbidden for the role,
404 unknown (or not yours: existence does not leak), 409 not allowed now, 422 invalid,
503 unavailable. Each refusal's status comes from `HTTP_STATUS` (service/refusals.py).
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations,
# and the action endpoints are built from models at run time.

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qs

import uvicorn
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as InPath
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from swagger_ui_bundle import swagger_ui_path
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from activities.answer_links import AnswerLinks
from activities.signing import PROVIDER_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from api.answer_page import add_answer_routes
from api.auth import digest, load_keys, staff_of
from api.fhir import add_fhir_routes
from api.sessions import COOKIE, SessionTokens, signed_in_page, signed_out_page, signin_page
from config.codec import is_encrypted, label_of
from config.links import answer_link_secrets, public_url
from config.settings import Settings
from domain.access import may_export, may_read_reports, may_see, scope_of
from domain.commands import (
    CASE_NUMBER,
    COMMAND_KEY_PATTERN,
    COMMAND_KEY_RULE,
    AnswerReferral,
    OpenCase,
    StaffCommand,
    new_command_key,
)
from domain.directory import Directory, load_directory
from domain.errors import Refusal, explain
from domain.events import Event
from domain.models import Actor, Client, Note, ReferralAnswer, RiskLevel, Role, Stage
from domain.policy import Program, load_programs
from domain.views import CaseSummary, CaseView, Order, Receipt
from service import access_log
from service.caselist import MAX_PAGE, CaseFilter, CaseList, Position
from service.erasure import Erasure, erase_client
from service.export import SubjectAccess, html_chunks, json_chunks
from service.facade import MAX_EVENTS_PAGE, MAX_NOTES_PAGE, CaseOps, new_case_number
from service.refusals import HTTP_STATUS, CaseError, title
from service.reports import Reports, Snapshots, stage_chart_png
from store.db import engine as make_engine
from store.keys import ClientErased

# A case number in a path: one that cannot be a case is refused (422) before anything asks
# Temporal about it (the fuzz test's number of stray characters made its server give up: a 5xx).
CaseNumber = Annotated[str, InPath(pattern=CASE_NUMBER, description="a case number, e.g. 261126-4735")]

IDEMPOTENCY_HEADER = "Idempotency-Key"
# An export is a self-contained document: no scripts, nothing fetched, never framed.
EXPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
# Declared in the OpenAPI document as the API's security scheme; checked by `caller`.
API_KEY = HTTPBearer(auto_error=False, scheme_name="apiKey", description="an API key: Bearer <key>")


def add_offline_docs(app: FastAPI) -> None:
    """/docs with Swagger UI's files from the swagger-ui-bundle package, never a CDN."""
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="casework API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )


class Problem(Exception):
    def __init__(
        self, status: int, title: str, detail: str, key: str | None = None, kind: Refusal | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.key, self.kind = status, title, detail, key, kind

    @classmethod
    def refused(
        cls, kind: Refusal, detail: str, named: str | None = None, key: str | None = None
    ) -> "Problem":
        """A refusal as problem details: its status from HTTP_STATUS, titled by its kind unless named."""
        return cls(HTTP_STATUS[kind], named or title(kind), detail, key, kind)


# The refusal a status stands for when no domain refusal named one (e.g. FastAPI's own 404).
KIND_OF_STATUS = {
    400: Refusal.BAD_REQUEST,
    401: Refusal.UNAUTHENTICATED,
    403: Refusal.FORBIDDEN,
    404: Refusal.NOT_FOUND,
    405: Refusal.BAD_REQUEST,
    409: Refusal.CONFLICT,
    422: Refusal.VALIDATION,
    503: Refusal.UNAVAILABLE,
}


def problem(
    status: int, title: str, detail: str, key: str | None = None, kind: Refusal | None = None
) -> JSONResponse:
    """RFC 9457 problem details. Extension members: `kind`, the refusal kind (what a client such
    as the CLI acts on), and `idempotency_key`, the command's key when there was one."""
    content: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "kind": kind or KIND_OF_STATUS.get(status, Refusal.BAD_REQUEST),
    }
    headers = {}
    if key is not None:
        content["idempotency_key"] = key
        headers[IDEMPOTENCY_HEADER] = key
    if status == 503:
        headers["Retry-After"] = "10"
    return JSONResponse(
        status_code=status, media_type="application/problem+json", content=content, headers=headers
    )


def from_case_error(exc: CaseError) -> Problem:
    return Problem.refused(exc.kind, exc.message, key=exc.key)


class EventPage(BaseModel):
    items: list[Event]
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")


class NotePage(BaseModel):
    items: list[Note]
    seqs: list[int] = Field(description="the event each note belongs to")
    next_before: int | None = Field(description="pass as `before` for older notes; null at the end")


class RestoreBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=2000)


class EraseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=3, max_length=500, description="why, e.g. the client's request of 2026-11-02 (no names)"
    )


class ProviderAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case: str = Field(min_length=1, max_length=40)
    referral: str = Field(min_length=1, max_length=20)
    answer: ReferralAnswer  # the words the referral email and webhook offer (activities/messages.py)
    reason: str = Field(default="", max_length=4000)


class OpenCaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    program: str = "general"
    client: Client
    manager: str | None = Field(default=None, description="default: the caller")
    supervisor: str | None = None
    risk: RiskLevel = RiskLevel.LOW
    intake_reference: str | None = Field(
        default=None, max_length=100, description="the same reference never opens a second case"
    )
    note: str = Field(default="", max_length=4000)


class CasePage(BaseModel):
    items: list[CaseSummary]
    next_page_token: str | None = Field(description="pass as `page_token` for the next page; null at the end")


def action_models() -> dict[str, tuple[type[BaseModel], type[BaseModel]]]:
    """action -> (command model, request body model: the command without actor and action)."""
    models: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {}
    for command in get_args(get_args(StaffCommand)[0]):
        fields = {
            name: (f.annotation, f)
            for name, f in command.model_fields.items()
            if name not in ("actor", "action")
        }
        body = create_model(f"{command.__name__}Request", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]
        models[command.model_fields["action"].default] = (command, body)
    return models


class PageTokens:
    """Page tokens, signed: a token carries where the last page ended (service/caselist.py's
    `Position`), and only positions this API gave out are read back, so a token is opaque to
    callers and cannot be made up to probe the record."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def seal(self, raw: bytes) -> str:
        mac = hmac.new(self.secret, raw, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + raw).decode()

    def open(self, token: str) -> bytes:
        try:
            data = base64.b64decode(token.encode(), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            data = b""
        mac, raw = data[:16], data[16:]
        if not raw or not hmac.compare_digest(mac, hmac.new(self.secret, raw, hashlib.sha256).digest()[:16]):
            raise Problem.refused(
                Refusal.BAD_REQUEST, "page_token is not one this API gave out", "Bad page token"
            )
        return raw


CaseAccess = Callable[[Actor, str, str], Awaitable[None]]


def add_signin_routes(
    app: FastAPI, keys: dict[str, Actor], sessions: SessionTokens, ui_origins: Sequence[str]
) -> None:
    """GET /signin (a form for the API key), POST /signin (sets the session cookie), GET /signout."""
    ui_url = ui_origins[0] if ui_origins else None

    @app.get("/signin", include_in_schema=False)
    async def signin_form() -> HTMLResponse:
        return HTMLResponse(signin_page(ui_url=ui_url))

    @app.post("/signin", include_in_schema=False)
    async def signin(request: Request) -> HTMLResponse:
        # a plain HTML form: application/x-www-form-urlencoded, parsed here without python-multipart
        form = parse_qs((await request.body()).decode(errors="replace"))
        actor = keys.get(digest(form.get("key", [""])[0].strip()))
        if actor is None:
            return HTMLResponse(signin_page("Unknown API key.", ui_url), status_code=401)
        page = HTMLResponse(signed_in_page(actor, ui_url))
        page.set_cookie(
            COOKIE,
            sessions.seal(actor, datetime.now(UTC)),
            max_age=int(sessions.ttl.total_seconds()),
            httponly=True,
            samesite="lax",  # the UI on another port of the same host is the same site
            secure=request.url.scheme == "https",
        )
        return page

    @app.get("/signout", include_in_schema=False)
    async def signout() -> HTMLResponse:
        page = HTMLResponse(signed_out_page())
        page.delete_cookie(COOKIE, httponly=True, samesite="lax")
        return page


def add_codec_routes(
    app: FastAPI,
    codec: PayloadCodec,
    keys: dict[str, Actor],
    sessions: SessionTokens,
    ui_origins: Sequence[str],
    ops: CaseOps,
    log_access: CaseAccess,
) -> None:
    """The codec server the Temporal UI calls to show encrypted payloads: POST /codec/decode
    with {"payloads": [...]} in protobuf JSON, for a caller with an API key or a session
    cookie, and only payloads of cases that caller may see (404 otherwise, as for the API)."""
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(ui_origins),
        allow_credentials=True,  # the UI's "include cross-origin credentials": the session cookie
        allow_methods=["POST", "OPTIONS"],
        allow_headers=["content-type", "x-namespace", "authorization"],
    )

    def identify(request: Request) -> Actor:
        """The caller, from the API key, else from the session cookie (revoked keys end sessions)."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            actor = keys.get(digest(key.strip()))
        elif token := request.cookies.get(COOKIE):
            actor = sessions.open(token, datetime.now(UTC))
            actor = actor if actor in keys.values() else None
        else:
            raise Problem(401, "Unauthenticated", "sign in at /signin, or send 'Authorization: Bearer <key>'")
        if actor is None:
            raise Problem(401, "Unauthenticated", "unknown API key or expired sign-in: sign in at /signin")
        return actor

    async def may_decode(actor: Actor, label: str | None) -> str | None:
        """The case number of a payload labelled `label`, if `actor` may read it; else 404.
        Unlabelled payloads (no case, or written before labels) are for those who see everything."""
        scope = scope_of(actor, ops.programs)
        number = label.removeprefix("case-") if label and label.startswith("case-") else None
        if number is None:
            if scope is not None and scope.everything:
                return None
            raise Problem(404, "Not found", "no such case")
        recorded = await ops.recorded_case(number)
        try:
            case = recorded[0] if recorded else (await ops.view(number)).case
        except CaseError as exc:
            raise from_case_error(exc) from None
        if not may_see(actor, case, ops.programs):
            raise Problem(404, "Not found", f"no case {number}")
        return number

    @app.post("/codec/decode", include_in_schema=False)
    async def decode(request: Request) -> JSONResponse:
        actor = identify(request)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # JSON only: a browser must ask CORS first (preflight), so no other site's form
            # can spend a signed-in person's cookie here
            return problem(415, "Unsupported media type", "send application/json")
        try:
            body = await request.json()
            payloads = [ParseDict(p, Payload()) for p in body.get("payloads", [])]
        except (ValueError, AttributeError, ParseError) as exc:
            return problem(400, "Invalid payloads", str(exc))
        # The labels are checked before decoding and proven by it: a relabelled payload fails.
        labels = {label_of(p) for p in payloads if is_encrypted(p)}
        numbers = {n for label in labels if (n := await may_decode(actor, label)) is not None}
        try:
            converted = await codec.decode(payloads)
        except ClientErased:  # nothing to show: the payloads stay as Temporal keeps them
            converted = payloads
        except Exception as exc:  # wrong key, tampered data or label: say so, never a 500
            return problem(400, "Cannot convert payloads", str(exc) or type(exc).__name__)
        for number in sorted(numbers):
            await log_access(actor, number, "decode")
        return JSONResponse({"payloads": [MessageToDict(p) for p in converted]})

    @app.post("/codec/encode", include_in_schema=False)
    async def encode() -> JSONResponse:
        # The UI encodes only what a person types to start, signal or update a workflow; a
        # case takes commands signed by the API or the CLI only, so there is nothing to encode
        # for. Refused for everyone: an encoder would make valid ciphertext for any case.
        return problem(
            403, "Forbidden", "casework takes commands through its API and CLI, not the Temporal UI"
        )


def create_app(
    ops: CaseOps,
    directory: Directory,
    keys: dict[str, Actor],
    store: AsyncEngine | None,
    token_secret: bytes | None = None,
    codec: PayloadCodec | None = None,
    ui_origins: Sequence[str] = (),
    session_ttl: timedelta = timedelta(hours=8),
    answer_links: AnswerLinks | None = None,
    report_max_age: timedelta = timedelta(minutes=5),
) -> FastAPI:
    """The API. With a payload `codec`, also the Temporal UI's decoder (POST /codec/decode,
    for people signed in at /signin or sending their key) on CORS for `ui_origins`. With
    `answer_links`, the answer page of the links in referral emails (GET/POST /answer/{token}).
    Reports over a caseload's history are kept per scope for `report_max_age` (service/reports.py)."""
    secret = token_secret or os.urandom(32)
    snapshots = Snapshots(report_max_age)
    pages = PageTokens(secret)
    app = FastAPI(
        title="casework",
        version="0.1.0",
        description="Case management where every case is a durable Temporal workflow.",
        docs_url=None,  # served below from a package: the docs page works offline
        redoc_url=None,
    )
    app.state.ops = ops
    add_offline_docs(app)

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, exc.key, exc.kind)

    @app.exception_handler(CaseError)
    async def on_case_error(request: Request, exc: CaseError) -> JSONResponse:
        p = from_case_error(exc)
        return problem(p.status, p.title, p.detail, p.key, p.kind)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Fields of the body are named as in the body ("client.birth_date"), query ones as "query.x".
        errors = [e | {"loc": tuple(e["loc"])[1:]} if e["loc"][:1] == ("body",) else e for e in exc.errors()]
        detail = explain(errors, whole="body")
        return problem(HTTP_STATUS[Refusal.VALIDATION], title(Refusal.VALIDATION), detail)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    def caller(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(API_KEY)]) -> Actor:
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise Problem.refused(Refusal.UNAUTHENTICATED, "send an API key as 'Authorization: Bearer <key>'")
        actor = keys.get(digest(credentials.credentials.strip()))
        if actor is None:
            raise Problem.refused(Refusal.UNAUTHENTICATED, "unknown API key")
        return actor

    Caller = Annotated[Actor, Depends(caller)]

    async def visible(actor: Actor, number: str) -> CaseView:
        """The case, if this actor may see it; otherwise 404 as if it did not exist."""
        try:
            view = await ops.view(number)
        except CaseError as exc:
            raise from_case_error(exc) from None
        if not may_see(actor, view.case, ops.programs):
            raise Problem.refused(Refusal.NOT_FOUND, f"no case {number}")
        return view

    async def in_scope(actor: Actor, number: str) -> None:
        """404 unless this actor may see the case. Asks the record first: it answers while no
        worker runs (a query would wait for one), so a command can still be taken and kept."""
        recorded = await ops.recorded_case(number)
        case = recorded[0] if recorded else (await visible(actor, number)).case
        if not may_see(actor, case, ops.programs):
            raise Problem.refused(Refusal.NOT_FOUND, f"no case {number}")

    async def log_access(actor: Actor, number: str, what: str) -> None:
        if store is not None:
            await access_log.log_access(store, actor, number, what)

    if codec is not None:
        sessions = SessionTokens(secret, session_ttl)
        add_signin_routes(app, keys, sessions, ui_origins)
        add_codec_routes(app, codec, keys, sessions, ui_origins, ops, log_access)
    if answer_links is not None:
        add_answer_routes(app, answer_links, ops, log_access)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/programs", response_model=list[Program])
    async def programs(actor: Caller) -> list[Program]:
        """The programs cases can be opened in, as this deployment runs them (their deadlines,
        ladders and approvals): `casework programs` shows these, not a local folder's."""
        return sorted(ops.programs.values(), key=lambda program: program.key)

    @app.get("/me", response_model=Actor)
    async def me(actor: Caller) -> Actor:
        """Who the API key stands for: `casework login` checks a key with it."""
        return actor

    @app.post("/cases", response_model=CaseView, status_code=201, responses={200: {"model": CaseView}})
    async def open_case(
        body: OpenCaseBody,
        actor: Caller,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias=IDEMPOTENCY_HEADER,
                pattern=COMMAND_KEY_PATTERN,
                description=f"{COMMAND_KEY_RULE}. The same key again returns the case it opened (200), "
                "never a second one; the case's number comes from it (K-...) unless an intake "
                "reference is given",
            ),
        ] = None,
    ) -> JSONResponse:
        """Open a case. With `intake_reference`, or an `Idempotency-Key`, a retried request
        returns the same case (200)."""
        manager = body.manager or actor.id
        request_id = uuid.uuid4().hex
        try:
            command = OpenCase(
                actor=actor,
                number=new_case_number(datetime.now(UTC)),
                program=body.program,
                client=body.client,
                manager=manager,
                supervisor=body.supervisor,
                risk=body.risk,
                intake_reference=body.intake_reference,
                note=body.note,
                request_id=request_id,
            )
        except ValidationError as exc:
            raise Problem.refused(Refusal.VALIDATION, explain(exc.errors())) from None
        # keys are per caller, as for actions: nobody else's key can name this case
        key = f"{actor.id}:{idempotency_key}" if idempotency_key else None
        try:
            view = await ops.open_case(command, key=key)
        except CaseError as exc:
            p = from_case_error(exc)
            raise Problem(p.status, p.title, p.detail, key=idempotency_key, kind=p.kind) from None
        created = view.case.opening_request == request_id
        if not created:  # a retry: the case is shown only to someone who may see it, and logged
            if not may_see(actor, view.case, ops.programs):
                used = f"intake reference {body.intake_reference}" if body.intake_reference else "this key"
                raise Problem.refused(Refusal.CONFLICT, f"{used} is already used by another case")
            await log_access(actor, view.case.number, "view")
        return JSONResponse(
            view.model_dump(mode="json"),
            status_code=201 if created else 200,
            headers={"Location": f"/cases/{view.case.number}"}
            | ({IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else {}),
        )

    @app.get("/cases", response_model=CasePage)
    async def list_cases(
        actor: Caller,
        stage: Stage | None = None,
        program: str | None = None,
        manager: str | None = None,
        risk: RiskLevel | None = None,
        overdue: bool | None = None,
        next_due_before: datetime | None = None,
        closed: Annotated[bool, Query(description="include closed cases (erased ones too)")] = False,
        archived: Annotated[bool, Query(description="the same as `closed`", deprecated=True)] = False,
        sort: Annotated[
            Order,
            Query(description="`next_due`: soonest due first, cases with nothing due last; `newest`: opened"),
        ] = "next_due",
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        page_token: str | None = None,
    ) -> CasePage:
        """Cases the caller may see, from the record: open ones unless `closed`, soonest due first
        unless `sort=newest`. Pass `next_page_token` back as `page_token` for the next page."""
        scope = scope_of(actor, ops.programs)
        if scope is None:
            raise Problem.refused(Refusal.FORBIDDEN, f"a {actor.role.value} may not list cases")
        if store is None:
            raise Problem.refused(
                Refusal.UNAVAILABLE, "this API has no record store configured", "No record store"
            )
        filt = CaseFilter(
            stage=stage,
            program=program,
            manager=manager,
            risk=risk,
            overdue=overdue,
            next_due_before=_utc(next_due_before),
            closed=closed or archived,
        )
        after = Position.decode(pages.open(page_token)) if page_token else None
        page = await CaseList(store, scope, datetime.now(UTC)).page(filt, sort, page_size, after)
        following = pages.seal(page.following.encode()) if page.following else None
        return CasePage(items=page.items, next_page_token=following)

    def reports_for(actor: Actor) -> Reports:
        """The reports over the cases this actor may see (reports are for supervisors and leads):
        the database counts within the actor's scope, the same rule `may_see` answers."""
        if refusal := may_read_reports(actor):
            raise Problem.refused(Refusal.FORBIDDEN, refusal)
        if store is None:
            raise Problem.refused(
                Refusal.UNAVAILABLE, "this API has no record store configured", "No record store"
            )
        scope = scope_of(actor, ops.programs)
        if scope is None:  # may_read_reports lets no such actor through; kept for the type
            raise Problem.refused(Refusal.FORBIDDEN, f"a {actor.role.value} may see no case")
        return Reports(store, scope, datetime.now(UTC), snapshots)

    @app.get("/charts/stages.png", responses={200: {"content": {"image/png": {}}}})
    async def stages_chart(actor: Caller) -> Response:
        """Open cases by stage, week by week, over the cases the caller may see (a PNG)."""
        series, ends = await reports_for(actor).stage_series()
        return Response(await asyncio.to_thread(stage_chart_png, series, ends), media_type="image/png")

    @app.get("/reports/{name}", responses={200: {"content": {"text/csv": {}}}})
    async def report(
        name: Literal["caseload", "overdue", "referrals", "stages", "weekly"],
        actor: Caller,
        format: Literal["json", "csv"] = "json",
    ) -> Response:
        """A caseload report over the cases the caller may see (supervisors and program leads)."""
        result = await reports_for(actor).named(name)
        if format == "csv":
            return Response(result.csv(), media_type="text/csv")
        return JSONResponse(result.as_json())

    @app.get("/cases/{number}", response_model=CaseView)
    async def show_case(number: CaseNumber, actor: Caller) -> CaseView:
        view = await visible(actor, number)
        await log_access(actor, number, "view")
        return view

    @app.get("/cases/{number}/events", response_model=EventPage)
    async def case_events(
        number: CaseNumber,
        actor: Caller,
        after: Annotated[int, Query(ge=0, description="events after this seq")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 100,
    ) -> EventPage:
        """The case's events from the record, oldest first, a page at a time."""
        await in_scope(actor, number)
        await log_access(actor, number, "events")
        items = await ops.events(number, after=after, limit=limit)
        return EventPage(items=items, next_after=items[-1].seq if len(items) == limit else None)

    @app.get("/cases/{number}/notes", response_model=NotePage)
    async def case_notes(
        number: CaseNumber,
        actor: Caller,
        before: Annotated[int | None, Query(ge=1, description="notes of events before this seq")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_NOTES_PAGE)] = 20,
    ) -> NotePage:
        """What people wrote on the case (notes, reasons, summaries), newest first."""
        await in_scope(actor, number)
        await log_access(actor, number, "notes")
        notes = await ops.notes(number, before=before, limit=limit)
        return NotePage(
            items=[n for _, n in notes.found],
            seqs=[seq for seq, _ in notes.found],
            next_before=notes.next_before,
        )

    @app.get(
        "/cases/{number}/export",
        responses={200: {"content": {"application/json": {}, "text/html": {}}}, 403: {}, 404: {}, 503: {}},
    )
    async def export_client(
        number: CaseNumber, actor: Caller, format: Literal["json", "html"] = "json"
    ) -> StreamingResponse:
        """Everything the record holds about the case's client, for a subject access request
        (supervisors and program leads of the case): JSON, or a printable HTML document. Logged."""
        await in_scope(actor, number)
        recorded = await ops.recorded_case(number)
        if store is None or recorded is None:
            raise Problem.refused(
                Refusal.UNAVAILABLE, f"case {number} is not in the record yet; try again shortly"
            )
        if refused := may_export(actor, recorded[0], ops.programs):
            raise Problem.refused(refused.kind, refused.message)
        await log_access(actor, number, "export")  # before reading: the export lists itself
        try:
            export = await SubjectAccess(store, ops.data_keys_for_record()).export(
                number, actor, datetime.now(UTC)
            )
        except ClientErased:
            raise Problem.refused(
                Refusal.ERASED, f"case {number}'s client data was erased: nothing about them is left"
            ) from None
        assert export is not None, "the record had the case a moment ago, and cases are never deleted"
        chunks, media = (html_chunks, "text/html") if format == "html" else (json_chunks, "application/json")
        return StreamingResponse(
            (chunk.encode() async for chunk in chunks(export)),
            media_type=f"{media}; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{number}-export.{format}"',
                "Cache-Control": "no-store",
                "Content-Security-Policy": EXPORT_POLICY,
            },
        )

    @app.post("/cases/{number}/restore", response_model=CaseView, responses={403: {}, 404: {}, 409: {}})
    async def restore_case(number: CaseNumber, body: RestoreBody, actor: Caller) -> CaseView:
        """Start a case again from the record after Temporal lost its workflow (supervisors)."""
        await in_scope(actor, number)
        restored = await ops.restore(number, actor, body.reason)
        await log_access(actor, number, "view")  # the answer is the whole case: a read like any other
        return restored

    @app.post(
        "/cases/{number}/erase",
        response_model=Erasure,
        responses={403: {}, 404: {}, 409: {}, 503: {}},
    )
    async def erase(number: CaseNumber, body: EraseBody, actor: Caller) -> Erasure:
        """Erase the client of a closed case for good (program leads): their data key is
        destroyed, so nothing about them can be read any more in Temporal's history or the
        record; the case's facts stay for statistics. Asked again, answers the first erasure."""
        await in_scope(actor, number)
        try:
            return await erase_client(ops, actor, number, body.reason)
        except CaseError as exc:
            raise from_case_error(exc) from None

    for action, (command_model, body_model) in action_models().items():
        add_action_route(app, action, command_model, body_model, in_scope, caller, ops)

    @app.post("/callbacks/referrals", responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}, 503: {}})
    async def referral_answer(request: Request) -> JSONResponse:
        """Where providers answer referrals, signed with their shared secret."""
        body = await request.body()
        provider_id = request.headers.get(PROVIDER_HEADER, "")
        provider = directory.provider(provider_id)
        if provider is None:
            return problem(
                HTTP_STATUS[Refusal.UNAUTHENTICATED],
                "Unknown provider",
                f"{PROVIDER_HEADER} names no provider in the directory",
            )
        secret_env = provider.answer_secret_env
        secret = os.environ.get(secret_env) if secret_env else None
        if not secret:
            return problem(
                HTTP_STATUS[Refusal.UNAUTHENTICATED],
                "No callback secret",
                f"provider {provider.id} has no callback secret configured",
            )
        refusal = verify(
            secret,
            request.headers.get(TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
            now=time.time(),
        )
        if refusal is not None:
            return problem(HTTP_STATUS[Refusal.UNAUTHENTICATED], "Bad signature", refusal)
        try:
            answer = ProviderAnswer.model_validate_json(body)
            command = AnswerReferral(
                actor=Actor(id=provider.id, role=Role.PROVIDER),
                referral_id=answer.referral,
                answer=answer.answer,
                reason=answer.reason,
            )
        except ValidationError as exc:
            detail = explain(exc.errors(), whole="body")
            return problem(HTTP_STATUS[Refusal.VALIDATION], "Invalid answer", detail)
        try:  # the provider's retry of the same signed answer is the same command
            done = await ops.act(answer.case, command, key=callback_key(provider.id, body))
        except CaseError as exc:
            p = from_case_error(exc)
            # Do not tell a provider about cases or referrals that are not theirs: no case, no such
            # referral and another provider's referral read alike (case numbers cannot be probed).
            if exc.kind in (Refusal.FORBIDDEN, Refusal.NOT_FOUND):
                p = Problem.refused(
                    Refusal.NOT_FOUND,
                    f"no referral {answer.referral} for {provider.id} on case {answer.case}",
                )
            return problem(p.status, p.title, p.detail, p.key)
        status = done.referral.status.value if done.referral else answer.answer.value
        return JSONResponse({"case": answer.case, "referral": answer.referral, "status": status})

    add_fhir_routes(app, ops, directory, keys, store)  # providers' other door: FHIR Task + ServiceRequest
    return app


def add_action_route(
    app: FastAPI,
    action: str,
    command_model: type[BaseModel],
    body_model: type[BaseModel],
    in_scope: Any,
    caller: Any,
    ops: CaseOps,
) -> None:
    async def act(
        number: CaseNumber,
        body: body_model,  # type: ignore[valid-type]
        actor: Annotated[Actor, Depends(caller)],
        idempotency_key: Annotated[
            str | None,
            Header(
                alias=IDEMPOTENCY_HEADER,
                pattern=COMMAND_KEY_PATTERN,
                description=f"{COMMAND_KEY_RULE}. The same key again returns the first result and "
                "never applies twice; without one the API makes one and returns it in this header",
            ),
        ] = None,
    ) -> JSONResponse:
        await in_scope(actor, number)
        try:
            command = command_model.model_validate({**body.model_dump(), "actor": actor})  # type: ignore[attr-defined]
        except ValidationError as exc:
            detail = explain(exc.errors(), whole="body")
            raise Problem.refused(Refusal.VALIDATION, detail) from None
        # Keys are per caller: two people can never collide on (or replay) each other's commands.
        given = idempotency_key or new_command_key()
        try:
            done = await ops.act(number, command, f"{actor.id}:{given}", new_key=not idempotency_key)  # type: ignore[arg-type]
        except CaseError as exc:
            p = from_case_error(exc)
            raise Problem(p.status, p.title, p.detail, key=given, kind=p.kind) from None
        return JSONResponse(
            done.model_dump(mode="json") | {"key": given}, headers={IDEMPOTENCY_HEADER: given}
        )

    path = f"/cases/{{number}}/{action.replace('_', '-')}"
    app.add_api_route(
        path,
        act,
        methods=["POST"],
        response_model=Receipt,
        name=action,
        summary=(command_model.__doc__ or action).strip().splitlines()[0],
        responses={403: {}, 404: {}, 409: {}, 422: {}, 503: {}},
    )


def _utc(at: datetime | None) -> datetime | None:
    """A time given without its zone is taken as UTC (the record's times are)."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def callback_key(provider: str, body: bytes) -> str:
    """A provider's answer is idempotent by its content: the same answer sent twice is one."""
    return f"{provider}:{hashlib.sha256(body).hexdigest()[:32]}"


async def connected_app(settings: Settings) -> FastAPI:
    """The app wired to Temporal, the directory, the API keys and the record store from settings."""
    from config.temporal import connect

    client = await connect(settings)
    directory = load_directory(settings.directory_dir)
    record = make_engine(settings.database_url)
    timeout = timedelta(seconds=settings.command_timeout)
    keys = load_keys(settings.api_keys_file)
    ops = CaseOps(
        client,
        load_programs(settings.programs_dir),
        settings.task_queue,
        directory,
        record,
        timeout,
        staff=staff_of(keys),
    )
    secret = settings.api_token_secret.get_secret_value().encode() if settings.api_token_secret else None
    link_secrets = answer_link_secrets(settings)
    return create_app(
        ops,
        directory,
        keys,
        record,
        secret,
        codec=client.data_converter.payload_codec,
        ui_origins=settings.ui_origins,
        session_ttl=timedelta(hours=settings.session_hours),
        answer_links=AnswerLinks(link_secrets, public_url(settings)) if link_secrets else None,
    )


async def serve(app: Starlette, host: str, port: int, stop: asyncio.Event) -> None:
    # A browser keeps connections open: on stop, wait at most 3 s for requests under way.
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
