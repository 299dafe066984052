"""Sign-in, sign-out and the dashboard page; the page itself is static (``static/``) and
talks to ``/api/v1/`` with the session cookie and its CSRF token."""

from __future__ import annotations

import errno
import html
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from multidict import MultiDictProxy

from telematics.api.auth import SESSION_COOKIE, session_of
from telematics.api.errors import Handler
from telematics.api.keys import CLOCK, DB
from telematics.config import Settings
from telematics.store import sessions
from telematics.store.operators import UnknownOperator

STATIC = Path(__file__).parent / "static"
SETTINGS = web.AppKey("dashboard_settings", Settings)


def _same_origin(request: web.Request) -> bool:
    """Refuse cross-site form posts (login CSRF); browsers send Origin on POST."""
    origin = request.headers.get("Origin")
    return origin is None or origin.split("://", 1)[-1] == request.host


async def _form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The posted form. One aiohttp cannot parse (not UTF-8, multipart without a boundary
    or with a part's headers broken) is the client's mistake: a 400, not a 500."""
    try:
        return await request.post()
    except (ValueError, BadHttpMessage):
        raise web.HTTPBadRequest(text="form: not a readable form body") from None


async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard")


async def login_page(request: web.Request) -> web.Response:
    page = (STATIC / "login.html").read_text(encoding="utf-8")
    failed = "error" in request.query
    message = '<p class="error" role="alert">Wrong user or password.</p>' if failed else ""
    return web.Response(text=page.replace("<!--message-->", message), content_type="text/html")


async def login(request: web.Request) -> web.Response:
    if not _same_origin(request):
        raise web.HTTPForbidden(text="cross-site sign-in refused")
    form = await _form(request)
    user, password = str(form.get("user", "")), str(form.get("password", ""))
    async with request.app[DB].acquire() as conn:
        try:
            session = await sessions.sign_in(conn, user, password, request.app[CLOCK]())
        except UnknownOperator:
            raise web.HTTPSeeOther("/login?error=1") from None
    response = web.HTTPSeeOther("/dashboard")
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        max_age=int(sessions.SESSION_TTL.total_seconds()),
        httponly=True,
        secure=request.app[SETTINGS].cookie_secure,
        samesite="Strict",
        path="/",
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    session = await session_of(request)
    form = await _form(request)
    if session is not None:
        if form.get("csrf") != session.csrf_token:
            raise web.HTTPForbidden(text="csrf: missing or wrong")
        async with request.app[DB].acquire() as conn:
            await sessions.sign_out(conn, session.id)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def dashboard(request: web.Request) -> web.Response:
    session = await session_of(request)
    if session is None:
        raise web.HTTPSeeOther("/login")
    settings = request.app[SETTINGS]
    config = {
        "user": session.operator.id,
        "role": session.operator.role,
        "fleets": None if session.operator.fleets is None else sorted(session.operator.fleets),
        "csrf": session.csrf_token,
        "tiles": settings.map_tiles,
        "attribution": settings.map_attribution,
        "live_ping_s": settings.live_ping_s,
    }
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    boot = html.escape(orjson.dumps(config).decode(), quote=True)
    page = page.replace("<!--config-->", f'<meta name="tm-config" content="{boot}">')
    response = web.Response(text=page, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def static_not_found(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's file server lets the OS's ENAMETOOLONG for a very long name escape as a
    500; no file of ours has such a name, so it is a 404."""
    if not request.path.startswith("/static/"):
        return await handler(request)
    try:
        return await handler(request)
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        raise web.HTTPNotFound() from None


def setup_dashboard(app: web.Application, settings: Settings) -> None:
    app[SETTINGS] = settings
    app.middlewares.append(static_not_found)
    r = app.router
    r.add_get("/", root)
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/dashboard", dashboard)
    r.add_static("/static/", STATIC, append_version=False)
