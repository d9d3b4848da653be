"""The Temporal UI of `casework dev`, behind a small proxy that tells it to send cookies to
the codec endpoint.

The UI's decoder sends cross-origin credentials (our /signin session cookie) only when its
settings say `Codec.IncludeCredentials`, and `temporal server start-dev` has no flag for that
(a UI server config file has, but the dev server takes none). So the dev server's UI runs on
a private port and this proxy serves it on the UI port, setting that one field in
/api/v1/settings. Without it, each person would have to tick "Include cross-origin
credentials" in the UI's codec settings (kept in their browser's localStorage).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

SETTINGS_PATH = "/api/v1/settings"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


def ui_proxy(upstream: str) -> Starlette:
    """Serves the Temporal UI running at `upstream` (http://host:port)."""
    client = httpx.AsyncClient(base_url=upstream, timeout=httpx.Timeout(60.0, connect=5.0))

    async def forward(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if request.url.path == SETTINGS_PATH:
            headers["accept-encoding"] = "identity"  # plain JSON, to change one field
        sent = client.build_request(
            request.method,
            request.url.path,
            params=request.url.query,
            headers=headers,
            content=await request.body(),
        )
        answer = await client.send(sent, stream=True)
        out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        if request.url.path == SETTINGS_PATH and answer.status_code == 200:
            settings = json.loads(await answer.aread())
            await answer.aclose()
            settings.setdefault("Codec", {})["IncludeCredentials"] = True
            for rewritten in ("content-length", "content-encoding"):
                out_headers.pop(rewritten, None)
            return Response(json.dumps(settings), answer.status_code, out_headers)
        return StreamingResponse(
            answer.aiter_raw(), answer.status_code, out_headers, background=BackgroundTask(answer.aclose)
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)
