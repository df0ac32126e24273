"""Who is asking: session cookies for officers' browsers, Bearer tokens for machines; CSRF; roles.

A browser session is a random token in an HttpOnly, SameSite=Strict cookie; every state-changing
request made with that cookie must carry the session's CSRF token in the X-CSRF-Token header
(a form posted from another site cannot set a header). Login itself is guarded the same way by a
token the login page hands out (double submit: cookie and header must match). Requests with
`Authorization: Bearer <token>` need no CSRF token: a browser never adds that header by itself.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

from edge.users import Role, Session, User, UserStore

SESSION_COOKIE = "sg_session"
LOGIN_CSRF_COOKIE = "sg_login_csrf"
LANG_COOKIE = "sg_lang"
CSRF_HEADER = "x-csrf-token"
# Requests the page makes by itself (status refresh, history reload) say so, and do not count as
# the officer's activity: an unattended board logs out after the idle time.
BACKGROUND_HEADER = "x-sg-background"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def problem(status: int, code: str, message: str, **extra: Any) -> HTTPException:
    """An HTTP error whose detail carries a machine-readable code (the page translates it)."""
    return HTTPException(status, {"code": code, "message": message, **extra})


@dataclass(frozen=True)
class Principal:
    """The user a request acts for, and how they proved it."""

    user: User
    via: str  # "session" or "token"
    session: Session | None = None

    def require(self, role: Role) -> None:
        if not self.user.role.at_least(role):
            raise problem(403, f"{role.value}_required", f"only a {role.value} may do this")


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class Authenticator:
    """FastAPI dependency: the request's Principal, or 401; CSRF for cookie-authenticated writes."""

    def __init__(self, store: UserStore):
        self.store = store

    def principal_or_none(self, request: Request, touch: bool = False) -> Principal | None:
        token = bearer_token(request)
        if token is not None:
            user = self.store.token_user(token)
            return Principal(user, "token") if user else None
        session = self.store.session(request.cookies.get(SESSION_COOKIE), touch=touch)
        return Principal(session.user, "session", session) if session else None

    async def __call__(self, request: Request) -> Principal:
        background = request.headers.get(BACKGROUND_HEADER) == "1" or request.url.path == "/api/events"
        principal = self.principal_or_none(request, touch=not background)
        if principal is None:
            raise problem(401, "login_required", "log in first (or send an API token)")
        if principal.via == "session" and request.method not in SAFE_METHODS:
            assert principal.session is not None
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), principal.session.csrf.encode()):
                raise problem(403, "csrf", "missing or wrong CSRF token")
        return principal


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def login_csrf_ok(request: Request) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())
