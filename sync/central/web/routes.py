"""Central's monitoring page and its API: log-in, gates at a glance, one gate, alarms, search, live stream,
`/metrics` and offline API docs.

Who may do what (checked by central's CentralAuth middleware before any body is read, from `WEB_ROUTES`):

  anyone        GET /login (the form), POST /api/v1/session {"token"} (log-in; needs the form's CSRF token;
                throttled per address and over all addresses: 429 + Retry-After, see web/login_throttle.py),
                GET / (sends a browser without a session to /login), /static/central/*,
                /static/swagger/* (the page's and the docs' own files: nothing comes from another site)
  monitor, operator, admin   (a session cookie from the log-in, or `Authorization: Bearer`)
    GET    /api/v1/session                 who is logged in, the session's CSRF token, may they acknowledge
    DELETE /api/v1/session                 log out
    GET    /api/v1/monitor/overview        every gate at a glance, held trucks and alarm counts
    GET    /api/v1/monitor/gates/{gate}    one gate: lanes, devices, recent trucks, throughput per hour
    GET    /api/v1/monitor/alarms?state=active|unacked|cleared|all&gate=
    GET    /api/v1/monitor/search?q=&gate=     trucks by plate, container, seal or declaration number
    GET    /api/v1/monitor/live            Server-Sent Events: `overview`, `alarms`, `logout`
    GET    /metrics                        Prometheus exposition (sync/central/metrics.py)
    GET    /openapi.json, /docs            the API description and Swagger UI (offline) showing it
  operator, admin
    POST   /api/v1/monitor/alarms/{id}/ack     acknowledged by the logged-in operator's name, now
    POST   /api/v1/monitor/alarms/{id}/clear

A publisher's token cannot open a session (403 ROLE_NOT_ALLOWED), nor can a gate's.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from edge.kiosk import i18n as kiosk_i18n
from sync.central.metrics import CentralMetrics, GateRouteCounter
from sync.central.store import CentralStore
from sync.central.web import page
from sync.central.web.alarms import ALARM_ID, AlarmBook
from sync.central.web.live import LiveFeed
from sync.central.web.login_throttle import LoginThrottle, ThrottleSettings
from sync.central.web.sessions import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginRefused,
    Operator,
    WebSessions,
    csrf_ok,
)
from sync.central.web.views import ensure_indexes, gate_detail, overview, search_trucks

log = logging.getLogger(__name__)

_GATE = r"(?P<gate>[A-Z0-9_-]{1,64})"
VIEW, ACK = "monitor|operator|admin", "operator|admin"
WEB_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"/api/v1/session"), VIEW),
    ("DELETE", re.compile(r"/api/v1/session"), VIEW),
    ("GET", re.compile(r"/api/v1/monitor/overview"), VIEW),
    ("GET", re.compile(r"/api/v1/monitor/gates/[A-Z0-9_-]{1,64}"), VIEW),
    ("GET", re.compile(r"/api/v1/monitor/alarms"), VIEW),
    ("GET", re.compile(r"/api/v1/monitor/search"), VIEW),
    ("GET", re.compile(r"/api/v1/monitor/live"), VIEW),
    ("POST", re.compile(r"/api/v1/monitor/alarms/[ces][0-9]{1,18}/(ack|clear)"), ACK),
    ("GET", re.compile(r"/metrics"), VIEW),
    ("GET", re.compile(r"/openapi\.json"), VIEW),
    ("GET", re.compile(r"/docs"), VIEW),
]
_OPEN = {("GET", "/login"), ("POST", "/api/v1/session"), ("GET", "/")}
_OPEN_PREFIXES = ("/static/central/", "/static/swagger/")
SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js")
KIOSK_I18N_JS = kiosk_i18n.TEMPLATE_DIR.parent / "static" / "i18n.js"  # the kiosk's language switcher, shared
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
# Swagger UI sets inline styles on the elements it draws (its own files still come from here only).
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def is_open(method: str, path: str) -> bool:
    """True for the page routes anyone may ask for (each checks the session itself where it must)."""
    return (method, path) in _OPEN or (method in ("GET", "HEAD") and path.startswith(_OPEN_PREFIXES))


def _swagger_dir() -> Path:
    """Swagger UI's files as the fastapi-offline package ships them (its static folder; nothing else of it is used)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


class WebAuth:
    """The cookie half of central's authentication (CentralAuth asks it when no bearer token is sent)."""

    def __init__(self, sessions: WebSessions):
        self.sessions = sessions

    @staticmethod
    def _cookie(scope, name: str) -> str | None:
        return Request(scope).cookies.get(name)

    def session_operator(self, scope) -> Operator | None:
        """The operator of the request's live session cookie, or None."""
        return self.sessions.find(self._cookie(scope, SESSION_COOKIE))

    @staticmethod
    def csrf_refused(scope, operator: Operator) -> bool:
        """True when a state-changing request made with the cookie lacks the session's CSRF token."""
        if scope.get("method", "GET") in SAFE_METHODS:
            return False
        sent = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-csrf-token"), None)
        return not csrf_ok(operator.csrf, sent)


class SecurityHeaders:
    """Pure ASGI middleware: a strict content security policy and friends on the page's responses."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        extra = dict(SECURITY_HEADERS, **{"content-security-policy": DOCS_CSP if path == "/docs" else CSP})
        if path in ("/", "/login", "/docs") or path.startswith("/api/"):
            extra["cache-control"] = "no-store"

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in extra.items() if k.encode() not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _problem(status: int, code: str, message: str) -> HTTPException:
    return HTTPException(status, {"code": code, "message": message})


def install_web(app: FastAPI, store: CentralStore, *, silent_after_s: float = 60.0,
                live_interval_s: float = 2.0, login_throttle: ThrottleSettings | None = None) -> WebAuth:
    """Add the page, its API, /metrics and /docs to central's `app`; return the cookie authenticator for CentralAuth."""
    sessions = WebSessions(store)
    throttle = LoginThrottle(store, login_throttle)
    alarms = AlarmBook(store)
    ensure_indexes(store)
    metrics = CentralMetrics(store, alarms, silent_after_s, login=throttle)
    metrics.http.instrument(app)  # innermost: times the routes
    app.add_middleware(GateRouteCounter, metrics=metrics)
    app.add_middleware(SecurityHeaders)
    app.state.web_sessions, app.state.alarm_book, app.state.central_metrics = sessions, alarms, metrics
    app.state.login_throttle = throttle  # its `clock` is what the tests move
    swagger = _swagger_dir()

    def live_snapshot() -> dict[str, Any]:
        return {"overview": overview(store, silent_after_s), "alarms": alarms.counts()}

    live = LiveFeed(live_snapshot, interval_s=live_interval_s)
    app.state.live = live

    def language(request: Request) -> str:
        return page.choose_language(request.cookies.get("sg_lang"), request.headers.get("accept-language"))

    def secure(request: Request) -> bool:
        return request.url.scheme == "https"

    def operator_of(request: Request) -> Operator:
        """Who the request acts for: the session's operator (set by CentralAuth) or the bearer token's holder."""
        found = getattr(request.state, "operator", None)
        if found is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            found = sessions.token_holder(token.strip()) if scheme.lower() == "bearer" else None
        if found is None:  # CentralAuth let it through, so this is a gate token on a route that names no role
            raise _problem(403, "FORBIDDEN", "this credential may not use this route")
        return found

    # ------------------------------------------------------------ pages

    @app.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        operator = sessions.find(request.cookies.get(SESSION_COOKIE))
        if operator is None:
            return RedirectResponse("/login", status_code=303)
        return HTMLResponse(page.render("index.html", language(request)))

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request) -> Response:
        if sessions.find(request.cookies.get(SESSION_COOKIE)) is not None:
            return RedirectResponse("/", status_code=303)
        token = WebSessions.new_login_csrf()
        response = HTMLResponse(page.render("login.html", language(request), {"login_csrf": token}))
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure(request),
                            path="/", max_age=12 * 3600)
        return response

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        return HTMLResponse(page.render("docs.html", language(request)))

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/static/central/i18n.js", include_in_schema=False)  # before the folder's mount, which would answer 404
    def shared_i18n() -> FileResponse:
        """The kiosk's language switcher and time formatting, shared as it is (one copy in the tree)."""
        return FileResponse(KIOSK_I18N_JS, media_type="text/javascript")

    app.mount("/static/central", StaticFiles(directory=page.STATIC_DIR), name="central-static")

    for name in SWAGGER_FILES:
        def swagger_file(name: str = name) -> FileResponse:
            return FileResponse(swagger / name)

        app.add_api_route(f"/static/swagger/{name}", swagger_file, methods=["GET"], include_in_schema=False)

    # ------------------------------------------------------------ session

    @app.post("/api/v1/session", tags=["monitoring page"])
    def log_in(request: Request, body: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        """Log in with a monitor, operator or admin token (needs the log-in page's CSRF token in X-CSRF-Token):
        sets an HttpOnly, SameSite=Strict session cookie; the token itself is not kept by the browser.
        Throttled per client address and over all addresses: 429 with Retry-After (web/login_throttle.py)."""
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not cookie or not csrf_ok(cookie, request.headers.get("x-csrf-token")):
            raise _problem(403, "CSRF", "open the log-in page first (missing or wrong CSRF token)")
        host = request.client.host if request.client else None
        verdict = throttle.admit(host)
        if not verdict.allowed:
            wait = verdict.retry_after_s
            raise HTTPException(429, {"code": "TOO_MANY_ATTEMPTS", "retry_after_s": wait,
                                      "message": f"too many failed log-ins; try again in {wait} s"},
                                headers={"Retry-After": str(wait)})
        try:
            token = body.get("token")
            if not isinstance(token, str) or not 0 < len(token) <= 200:
                raise LoginRefused("BAD_TOKEN", "this token is not a valid operator token")
            session, operator = sessions.open(token.strip())
        except LoginRefused as exc:
            throttle.finish(host, ok=False)  # logged there, once per window per address
            raise _problem(401 if exc.code == "BAD_TOKEN" else 403, exc.code, str(exc)) from exc
        except BaseException:
            with contextlib.suppress(Exception):
                throttle.abandon(host)
            raise
        throttle.finish(host, ok=True)
        log.info("page log-in: %s (%s)", operator.name, operator.role)
        response = JSONResponse({"name": operator.name, "role": operator.role, "csrf": operator.csrf,
                                 "may_ack": operator.may_ack, "expires_at": operator.expires_at})
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", secure=secure(request),
                            path="/", max_age=int(sessions.session_s))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    @app.get("/api/v1/session", tags=["monitoring page"])
    def whoami(request: Request) -> dict[str, Any]:
        """Who is logged in, the session's CSRF token (for the page's writes) and whether they may acknowledge."""
        operator = operator_of(request)
        return {"name": operator.name, "role": operator.role, "csrf": operator.csrf, "may_ack": operator.may_ack,
                "expires_at": operator.expires_at}

    @app.delete("/api/v1/session", tags=["monitoring page"])
    def log_out(request: Request) -> JSONResponse:
        sessions.close(request.cookies.get(SESSION_COOKIE))
        response = JSONResponse({"logged_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------ monitoring

    @app.get("/api/v1/monitor/overview", tags=["monitoring page"])
    def monitor_overview() -> dict[str, Any]:
        """Every gate at a glance (online, link, cache age against policy, outbox backlog, lanes, held trucks)."""
        return {**overview(store, silent_after_s), "alarms": alarms.counts()}

    @app.get("/api/v1/monitor/gates/{gate}", tags=["monitoring page"])
    def monitor_gate(gate: str) -> dict[str, Any]:
        """One gate: lanes, devices' health, recent trucks, decisions per hour over the last day."""
        detail = gate_detail(store, gate, silent_after_s)
        if detail is None:
            raise _problem(404, "UNKNOWN_GATE", "central has heard nothing from that gate")
        return detail

    @app.get("/api/v1/monitor/alarms", tags=["monitoring page"])
    def monitor_alarms(state: str = Query("active", pattern="^(active|unacked|cleared|all)$"),
                       gate: str | None = Query(None, pattern=r"^[A-Z0-9_-]{1,64}$"),
                       limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
        """Alarms with severity and state, the ones needing a person first."""
        return {"alarms": alarms.list(gate, state, limit), "counts": alarms.counts()}

    def _alarm_change(request: Request, alarm: str, clear: bool) -> dict[str, Any]:
        operator = operator_of(request)
        if not ALARM_ID.fullmatch(alarm):
            raise _problem(404, "UNKNOWN_ALARM", "no such alarm")
        try:
            state = alarms.clear(alarm, operator.name) if clear else alarms.acknowledge(alarm, operator.name)
        except KeyError as exc:
            raise _problem(404, "UNKNOWN_ALARM", "no such alarm") from exc
        log.warning("alarm %s %s by %s (%s)", alarm, "cleared" if clear else "acknowledged", operator.name,
                    operator.role)
        return state

    @app.post("/api/v1/monitor/alarms/{alarm}/ack", tags=["monitoring page"])
    def acknowledge(request: Request, alarm: str) -> dict[str, Any]:
        """Acknowledge an alarm as the logged-in operator (operator or admin role)."""
        return _alarm_change(request, alarm, clear=False)

    @app.post("/api/v1/monitor/alarms/{alarm}/clear", tags=["monitoring page"])
    def clear(request: Request, alarm: str) -> dict[str, Any]:
        """Clear an alarm as the logged-in operator (acknowledging it too)."""
        return _alarm_change(request, alarm, clear=True)

    @app.get("/api/v1/monitor/search", tags=["monitoring page"])
    def search(q: str = Query(min_length=1, max_length=64),
               gate: str | None = Query(None, pattern=r"^[A-Z0-9_-]{1,64}$")) -> dict[str, Any]:
        """Trucks by plate, container, seal or declaration number (at least 3 letters or digits), newest first."""
        return {"query": q, "trucks": search_trucks(store, q, gate)}

    @app.get("/api/v1/monitor/live", tags=["monitoring page"])
    async def live_stream(request: Request) -> StreamingResponse:
        """Server-Sent Events: `overview` and `alarms` whenever they change; `logout` when the session ends."""
        session = request.cookies.get(SESSION_COOKIE)
        bearer = "authorization" in request.headers

        def still_allowed() -> bool:
            return bearer or sessions.find(session) is not None

        return StreamingResponse(live.stream(still_allowed), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        body, content_type = await run_in_threadpool(metrics.exposition)
        return Response(body, media_type=content_type)

    return WebAuth(sessions)
