"""The officer kiosk: login, the live lane board, officer actions, look-ups, user management.

Every route except /healthz, the login page (and its POST /api/login) and the static files needs a
session cookie or an API token (see edge/kiosk/auth.py). Officer actions reach the barrier only
through the lane controller, which journals them with the logged-in user's name before acting.

A write without a live session or token is refused (401) before its body is read; request
bodies are capped at MAX_BODY before they are read (413), validation errors never echo
the input, integers beyond 64 bits are refused with 422 (edge/http_guard.py); log-ins are
throttled and their passwords checked off the event loop (LoginGuard in edge/kiosk/auth.py).
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from devices.protocols.iso6346 import normalise_container
from edge.claims import ClaimError, ClaimPassage
from edge.declarations import declaration_to_mapping
from edge.http_guard import install_guards
from edge.kiosk import i18n
from edge.kiosk.auth import (
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Authenticator,
    LoginGuard,
    Principal,
    login_csrf_ok,
    new_login_csrf,
    problem,
)
from edge.kiosk.board import (
    GateAlarms,
    board_lane_view,
    board_lane_views,
    board_status_view,
    plate_query,
    recent_trucks,
)
from edge.kiosk.contracts import router as contracts_router
from edge.kiosk.live import LiveHub, sse
from edge.kiosk.views import lane_history, was_refused
from edge.lane import LaneError
from edge.metrics import NodeMetrics
from edge.node_view import NodeView
from edge.users import MIN_PASSWORD_LENGTH, USERNAME_RE, AuthSettings, LoginResult, Role, UserError, UserStore

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY = 32 * 1024  # the biggest kiosk request (a new user, an action's reason) is well under 4 KiB
SUPERVISOR_ACTIONS = {"manual_open", "manual_close", "acknowledge_alarm"}

SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class SecurityHeaders:
    """Pure ASGI middleware: the security headers on every response (errors and 413s included),
    `cache-control: no-store` on the API and the pages."""

    def __init__(self, app):
        self.app = app
        self._headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        no_store = path.startswith("/api/") or path in ("/", "/login")

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in self._headers if k not in present]
                if no_store and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class CredentialsFirst:
    """Pure ASGI middleware: a write to the API with no live session or token is answered 401
    before its body is read (and the connection closed, so the body is not drained either)."""

    def __init__(self, app, auth: Authenticator, public: frozenset[str]):
        self.app, self.auth, self.public = app, auth, public

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("method") not in ("GET", "HEAD", "OPTIONS") \
                and scope.get("path", "").startswith("/api/") and scope.get("path") not in self.public \
                and self.auth.principal_or_none(Request(scope)) is None:
            await JSONResponse({"detail": {"code": "login_required", "message": "log in first (or send an API token)"}},
                               status_code=401, headers={"connection": "close"})(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class OfficerActionRequest(_Body):
    """An officer's action at a lane. The officer is the logged-in user, never a field of the request."""

    action: Literal["release", "refuse", "inspect", "manual_open", "manual_close", "acknowledge_alarm"]
    reason: str = Field(min_length=3, max_length=500)

    @field_validator("reason", mode="before")
    @classmethod
    def _strip_reason(cls, value: Any) -> Any:
        return _strip(value)


class ClaimReleaseRequest(_Body):
    """Why a supervisor gives up a declaration's claim at the gate (journaled with their name and role)."""

    reason: str = Field(min_length=3, max_length=500)

    @field_validator("reason", mode="before")
    @classmethod
    def _strip_reason(cls, value: Any) -> Any:
        return _strip(value)


class LoginRequest(_Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class NewUserRequest(_Body):
    username: str = Field(min_length=1, max_length=64, pattern=USERNAME_RE.pattern)
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)
    role: Literal["display", "officer", "supervisor", "admin"]
    gate: str | None = Field(default=None, max_length=32, pattern=r"^(\*|[A-Z0-9_\-]+)$")
    display_name: str = Field(default="", max_length=100)


def create_app(node: NodeView, *, data_dir: Path | None = None, users: UserStore | None = None,
               settings: AuthSettings | None = None, metrics: NodeMetrics | None = None,
               stopping: Callable[[], bool] | None = None, recheck_s: float = 5.0) -> FastAPI:
    """The kiosk application for one node's view (users in <data_dir>/users.sqlite unless given; `/metrics`
    from `metrics` when given; live streams end once `stopping()` says the server is shutting down)."""
    settings = settings or AuthSettings()
    if users is None:
        if data_dir is None:
            raise ValueError("create_app needs a user store or the data folder to keep one in")
        users = UserStore(Path(data_dir) / "users.sqlite", settings)
    store = users
    auth = Authenticator(store)
    guard = LoginGuard(store, settings)
    alarms = GateAlarms(node.journal)
    hub = LiveHub(node, alarms=alarms, stopping=stopping)
    app = FastAPI(title=f"smartgate kiosk — {node.site.gate}", version="0.2.0",
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.state.users = store
    app.state.hub = hub
    app.state.login_guard = guard
    started = time.time()
    Authed = Annotated[Principal, Depends(auth)]
    node_metrics = metrics
    if node_metrics is not None:
        node_metrics.http.instrument(app)  # added first, so innermost: times the routes
    install_guards(app, max_body=MAX_BODY)
    app.add_middleware(CredentialsFirst, auth=auth, public=frozenset({"/api/login"}))
    app.add_middleware(SecurityHeaders)  # added last: outermost, so 401s and 413s carry the headers too

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(contracts_router, dependencies=[Depends(auth)])  # device contracts (JSON Schemas)

    def language(request: Request) -> str:
        return i18n.choose_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))

    def page_values(lang: str, **extra: str) -> dict[str, str]:
        names = {"en": node.site.name or node.site.gate, "vi": node.site.name_vi or node.site.name or node.site.gate}
        return {"lang": lang, "gate_name": names.get(lang, names["en"]), "gate": node.site.gate,
                "gate_name_en": names["en"], "gate_name_vi": names["vi"],
                "i18n_json": i18n.script_json({code: i18n.catalogue(code) for code in i18n.LANGUAGES}),
                **extra}

    def lane_or_404(lane_id: str) -> str:
        if lane_id not in node.lane_ids():
            raise problem(404, "no_lane", f"no lane {lane_id}")
        return lane_id

    # ------------------------------------------------------------ public

    @app.get("/healthz", tags=["public"])
    def healthz() -> JSONResponse:
        """Liveness: 200 `ok`, or 503 `degraded` with the reason while the journal cannot write (no gate data)."""
        body: dict[str, Any] = {"status": "ok", "gate": node.site.gate,
                                "uptime_s": round(time.time() - started, 1), "lanes": len(node.lane_ids())}
        journal = node.journal_status()
        if not journal["ok"]:
            body.update(status="degraded", reason=journal["reason"], since=journal["since"],
                        held_rows=journal["held_rows"], dropped_rows=journal["dropped_rows"])
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    @app.get("/metrics", include_in_schema=False)
    def metrics(principal: Authed) -> Response:
        """Prometheus exposition (scrape with an API token: `Authorization: Bearer ...`)."""
        if node_metrics is None:
            raise problem(503, "no_metrics", "metrics are not collected on this node")
        body, content_type = node_metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request):
        if auth.principal_or_none(request) is not None:
            return RedirectResponse("/", status_code=303)
        token = new_login_csrf()
        lang = language(request)
        response = HTMLResponse(i18n.render("login.html", lang, page_values(lang, login_csrf=token)))
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                            secure=settings.cookie_secure, path="/", max_age=12 * 3600)
        return response

    @app.post("/api/login", tags=["session"])
    async def login(body: LoginRequest, request: Request, response: Response) -> dict:
        """Log in with a user name and password (needs the login page's CSRF token in X-CSRF-Token).

        Wrong name, wrong password and disabled user all answer 401 alike. After repeated failures
        the address, the name or the pair waits a growing delay: 429 with Retry-After (and
        `retry_after_s`), whether the name exists or not; nobody is locked out. 503 with
        Retry-After when too many password checks are waiting already.
        """
        if not login_csrf_ok(request):
            raise problem(403, "csrf", "open the login page first (missing or wrong CSRF token)")
        host = request.client.host if request.client else None
        attempt = await guard.attempt(body.username, body.password, host)
        if attempt.result == LoginResult.THROTTLED:
            wait = attempt.retry_after_s
            raise problem(429, "throttled", f"too many failed attempts; try again in {wait} s",
                          headers={"retry-after": str(wait)}, retry_after_s=wait)
        if attempt.result == LoginResult.BUSY:
            raise problem(503, "login_busy", "too many log-ins at once; try again in a moment",
                          headers={"retry-after": str(attempt.retry_after_s)}, retry_after_s=attempt.retry_after_s)
        user = attempt.user
        if attempt.result != LoginResult.OK or user is None:
            raise problem(401, "bad_credentials", "wrong user name or password")
        token, session = await run_in_threadpool(store.create_session, user, host or "")
        # A wall board's (display) session outlives the officers' twelve hours: the cookie too.
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=settings.cookie_secure,
                            path="/", max_age=int(max(session.expires_at - time.time(), 0)))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return {"user": user.to_dict(), "csrf": session.csrf, "expires_at": session.expires_at}

    # ------------------------------------------------------------ session

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def board_page(request: Request):
        if auth.principal_or_none(request) is None:
            return RedirectResponse("/login", status_code=303)
        lang = language(request)
        return HTMLResponse(i18n.render("lanes.html", lang, page_values(lang)))

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(principal: Authed) -> dict:
        return app.openapi()

    @app.post("/api/logout", tags=["session"])
    def logout(principal: Authed, response: Response) -> dict:
        """End this browser session (API tokens are revoked with `smartgate users`)."""
        if principal.session is not None:
            store.end_session(principal.session.token_hash)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return {"ok": True}

    @app.get("/api/session", tags=["session"])
    def session_info(principal: Authed) -> dict:
        """Who is logged in, their CSRF token, and when the session ends if left idle (a display: never)."""
        session = principal.session
        display = principal.user.role == Role.DISPLAY
        return {"user": principal.user.to_dict(), "via": principal.via, "gate": node.site.gate,
                "may_act": principal.user.may_act_at(node.site.gate), "display": display,
                "csrf": session.csrf if session else None,
                "expires_at": session.expires_at if session else None,
                "idle_timeout_s": None if display else settings.idle_timeout_s}

    # ------------------------------------------------------------ lanes

    @app.get("/api/lanes", tags=["lanes"])
    async def lanes(principal: Authed) -> list[dict]:
        """Every lane: state, transaction with readings, decision with reasons, declaration, devices."""
        return board_lane_views(node)

    @app.get("/api/lanes/{lane_id}", tags=["lanes"])
    async def lane(lane_id: str, principal: Authed) -> dict:
        """One lane."""
        lane_or_404(lane_id)
        return board_lane_view(node, lane_id)

    @app.get("/api/lanes/{lane_id}/history", tags=["lanes"])
    async def history(lane_id: str, principal: Authed, limit: int = Query(20, ge=1, le=200)) -> list[dict]:
        """The lane's latest decisions, officer actions (with the officer), barrier commands and alarms."""
        lane_or_404(lane_id)
        return lane_history(node, lane_id, limit)

    @app.post("/api/lanes/{lane_id}/actions", tags=["lanes"])
    async def act(lane_id: str, request: OfficerActionRequest, principal: Authed) -> dict:
        """Release, refuse or send to inspection the truck at a lane; supervisors also open or close the
        barrier by hand and release a refused truck. Journaled with the user's name before it acts.
        A wall board (display) never acts: 403."""
        principal.require(Role.OFFICER)
        lane_or_404(lane_id)
        user = principal.user
        if not user.may_act_at(node.site.gate):
            raise problem(403, "wrong_gate", f"{user.username} acts at gate {user.gate}, not {node.site.gate}")
        if request.action in SUPERVISOR_ACTIONS:
            principal.require(Role.SUPERVISOR)
        tx = node.open_transaction(lane_id)
        if request.action == "release" and tx is not None and was_refused(tx) \
                and not user.role.at_least(Role.SUPERVISOR):
            raise problem(403, "override_requires_supervisor", "only a supervisor may release a refused truck")
        try:
            await node.officer_action(lane_id, request.action, user.username, request.reason, user.role.value)
        except LaneError as exc:
            raise problem(409, "lane_refused", str(exc)) from exc
        return {"ok": True, "action": request.action, "officer": user.username,
                "lane": board_lane_view(node, lane_id)}

    @app.get("/api/claims", tags=["lanes"])
    def claims(principal: Authed, number: str | None = Query(None, max_length=64),
               lane: str | None = Query(None, max_length=64),
               passage: Literal["commanded", "passed", "unknown"] | None = Query(None),
               limit: int = Query(100, ge=1, le=1000)) -> list[dict]:
        """Declarations claimed at this gate (each used once: the barrier opened for a truck on it), newest
        first; `passage` unknown means the node restarted while that truck was on its way."""
        if number is not None:
            claim = node.cache.claims([number]).get(number)
            return [claim.to_dict()] if claim is not None else []
        return [c.to_dict() for c in node.cache.claim_list(
            lane=lane, passage=ClaimPassage(passage) if passage else None, limit=limit)]

    @app.post("/api/claims/{number}/release", tags=["lanes"])
    async def release_claim(number: Annotated[str, PathParam(max_length=64)], body: ClaimReleaseRequest,
                            principal: Authed) -> dict:
        """A supervisor gives up the gate's claim on a declaration (a truck that never went, a passage unknown
        after a restart and checked on the ground): journaled with their name, role and reason before it acts,
        so the declaration may be released once more. 404 when nothing claims it, 409 while its truck passes."""
        principal.require(Role.SUPERVISOR)
        user = principal.user
        if not user.may_act_at(node.site.gate):
            raise problem(403, "wrong_gate", f"{user.username} acts at gate {user.gate}, not {node.site.gate}")
        if node.cache.claims([number]).get(number) is None:
            raise problem(404, "not_claimed", f"declaration {number} is not claimed at this gate")
        try:
            released = await node.release_claim(number, user.username, user.role.value, body.reason)
        except ClaimError as exc:
            raise problem(409, "claim_refused", str(exc)) from exc
        return {"ok": True, "released": released, "by": user.username}

    @app.get("/api/transactions", tags=["lanes"])
    def transactions(principal: Authed, lane: str | None = Query(None, max_length=64),
                     limit: int = Query(50, ge=1, le=1000)) -> list[dict]:
        """Finished transactions, newest first, from the journal; `final` says what happened and who did it
        (released by an officer, automatically, refused, a supervisor's manual opening of an empty lane ...)."""
        names: dict[str, str] = {}

        def display_name(username: str) -> str:
            if username not in names:
                user = store.get_user(username)
                names[username] = (user.display_name or user.username) if user else username
            return names[username]

        return recent_trucks(node, lane, limit, display_name)

    # ------------------------------------------------------------ status and look-ups

    @app.get("/api/devices", tags=["status"])
    def devices(principal: Authed) -> list[dict]:
        """Health of every device."""
        return node.device_health()

    @app.get("/api/cache", tags=["status"])
    def cache(principal: Authed) -> dict:
        """Declaration cache size and age."""
        return node.cache.stats()

    @app.get("/api/status", tags=["status"])
    async def status(principal: Authed) -> dict:
        """The status strip: device health, link to central, declaration cache age against policy, outbox."""
        stats = await run_in_threadpool(node.cache.stats)
        return board_status_view(node, stats, alarms)

    @app.get("/api/declarations", tags=["status"])
    def declarations(principal: Authed, q: str = Query(min_length=2, max_length=64)) -> dict:
        """Look up declarations by plate (the whole plate, or its last 4 or more characters: `123.45`),
        container number or declaration number."""
        q = q.strip()
        found: dict[str, Any] = {}
        direct = node.cache.get(q)
        if direct is not None:
            found[direct.number] = direct
        for declaration in node.cache.by_plate(q)[:50]:
            found.setdefault(declaration.number, declaration)
        if len(normalise_container(q)) == 11:
            for declaration in node.cache.by_container(q)[:50]:
                found.setdefault(declaration.number, declaration)
        end = plate_query(q)
        if end is not None and len(found) < 50:
            for declaration in node.cache.by_plate_end(end, limit=50):
                found.setdefault(declaration.number, declaration)
        return {"query": q, "results": [declaration_to_mapping(d) for d in list(found.values())[:50]]}

    @app.get("/api/events", tags=["lanes"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def events(request: Request, principal: Authed) -> StreamingResponse:
        """Server-Sent Events: `lane` (a lane's full view) on every change, `history` when a lane's
        history has a new line, `status` every few seconds, `logout` when the session ends."""
        token = request.cookies.get(SESSION_COOKIE)
        bearer = principal.via == "token"
        header = request.headers.get("authorization", "")

        def still_allowed() -> bool:
            if bearer:
                return store.token_user(header.partition(" ")[2].strip()) is not None
            return store.session(token) is not None

        stats = await run_in_threadpool(node.cache.stats)
        first = [sse("session", {"user": principal.user.to_dict()}),
                 sse("status", board_status_view(node, stats, alarms))]
        return StreamingResponse(hub.stream(still_allowed, recheck_s=recheck_s, first=first),
                                 media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    # ------------------------------------------------------------ users (admin)

    @app.get("/api/users", tags=["users"])
    def list_users(principal: Authed) -> list[dict]:
        """Every user (admin)."""
        principal.require(Role.ADMIN)
        return [u.to_dict() for u in store.list_users()]

    @app.post("/api/users", tags=["users"], status_code=201)
    def add_user(body: NewUserRequest, principal: Authed) -> dict:
        """Create a user (admin). The gate defaults to this node's gate."""
        principal.require(Role.ADMIN)
        try:
            user = store.add_user(body.username, body.password, body.role, body.gate or node.site.gate,
                                  body.display_name)
        except UserError as exc:
            status = 409 if "exists" in str(exc) else 422
            raise problem(status, "user_exists" if status == 409 else "user_invalid", str(exc)) from exc
        return user.to_dict()

    def set_disabled(username: str, principal: Principal, disabled: bool) -> dict:
        principal.require(Role.ADMIN)
        if disabled and username.lower() == principal.user.username.lower():
            raise problem(409, "disable_self", "an admin cannot disable their own account")
        try:
            return store.set_disabled(username, disabled).to_dict()
        except UserError as exc:
            raise problem(404, "no_user", str(exc)) from exc

    @app.post("/api/users/{username}/disable", tags=["users"])
    def disable_user(username: str, principal: Authed) -> dict:
        """Disable a user (admin): their sessions end at once and their API tokens stop working."""
        return set_disabled(username, principal, True)

    @app.post("/api/users/{username}/enable", tags=["users"])
    def enable_user(username: str, principal: Authed) -> dict:
        """Enable a disabled user again (admin)."""
        return set_disabled(username, principal, False)

    return app
