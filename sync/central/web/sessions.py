"""Browser log-in to central's monitoring page: a role token exchanged for an HttpOnly, SameSite=Strict session cookie.

An operator logs in once with the token an admin issued them (`smartgate central token --role monitor|operator|admin
--name ...`); the page then runs on a session cookie, never on the token, which leaves the browser with the form.

* The session id is random (256 bits); central keeps only its SHA-256 digest, with the holder's name and role and
  the digest of the token it was opened with. Revoking or replacing that token ends the session at its next
  request (the session is only valid while the token it came from still is).
* Every state-changing request made with the cookie must carry the session's CSRF token in `X-CSRF-Token` (a form
  posted from another site cannot set a header); the log-in form itself is guarded by a double-submit token
  (cookie and header must match), as the kiosk's is.
* Sessions last `SESSION_S` (a shift) and are kept in the central database, so every worker process knows them.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from sync.central.store import CentralStore
from sync.tokens import token_digest, token_problem

SESSION_COOKIE = "sg_central_session"  # not the kiosk's name: cookies are shared by every port of a host
LOGIN_CSRF_COOKIE = "sg_central_login"
CSRF_HEADER = "x-csrf-token"
SESSION_S = 12 * 3600
VIEW_ROLES = ("monitor", "operator", "admin")  # may open the page and read what it shows
ACK_ROLES = ("operator", "admin")  # may also acknowledge and clear alarms

_TABLE = ("CREATE TABLE IF NOT EXISTS web_sessions (session_sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, "
          "role TEXT NOT NULL, token_sha256 TEXT NOT NULL, csrf TEXT NOT NULL, "
          "created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL)")


@dataclass(frozen=True)
class Operator:
    """Who a browser session (or a bearer token) belongs to."""

    name: str
    role: str
    csrf: str = ""
    expires_at: float | None = None

    @property
    def may_ack(self) -> bool:
        return self.role in ACK_ROLES


class LoginRefused(ValueError):
    """The token is nobody's, or its role may not use the page (`code` says which)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class WebSessions:
    """Central's browser sessions, in its database."""

    def __init__(self, store: CentralStore, session_s: float = SESSION_S):
        self.store, self.session_s = store, session_s
        store.ensure_schema(_TABLE)

    @staticmethod
    def new_login_csrf() -> str:
        """A fresh double-submit token for the log-in form (cookie and header)."""
        return secrets.token_urlsafe(24)

    def token_holder(self, token: str) -> Operator | None:
        """The name and role of a role token, or None (gate tokens and unknown ones)."""
        if token_problem(token) is not None:
            return None
        rows = self.store.query("SELECT name, role FROM api_tokens WHERE token_sha256 = ?", (token_digest(token),))
        return Operator(rows[0][0], rows[0][1]) if rows else None

    def open(self, token: str) -> tuple[str, Operator]:
        """Exchange a role token for a new session: (session id for the cookie, operator); LoginRefused otherwise."""
        holder = self.token_holder(token)
        if holder is None:
            raise LoginRefused("BAD_TOKEN", "this token is not a valid operator token")
        if holder.role not in VIEW_ROLES:
            raise LoginRefused("ROLE_NOT_ALLOWED", f"a {holder.role} token may not open the monitoring page")
        session, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(24), time.time()
        expires = now + self.session_s
        self.store.query("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
        self.store.query("INSERT INTO web_sessions (session_sha256, name, role, token_sha256, csrf, created_at, "
                         "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (token_digest(session), holder.name, holder.role, token_digest(token), csrf, now, expires))
        return session, Operator(holder.name, holder.role, csrf, expires)

    def find(self, session: str | None) -> Operator | None:
        """The live session's operator, or None: unknown, expired, or its token revoked or replaced since."""
        if not session or len(session) > 200:
            return None
        rows = self.store.query(
            "SELECT s.name, s.role, s.csrf, s.expires_at FROM web_sessions s JOIN api_tokens t "
            "ON t.token_sha256 = s.token_sha256 AND t.role = s.role WHERE s.session_sha256 = ?",
            (token_digest(session),))
        if not rows or rows[0][3] < time.time():
            return None
        name, role, csrf, expires = rows[0]
        return Operator(name, role, csrf, expires)

    def close(self, session: str | None) -> None:
        """End a session (log-out)."""
        if session:
            self.store.query("DELETE FROM web_sessions WHERE session_sha256 = ?", (token_digest(session),))


def csrf_ok(expected: str, sent: str | None) -> bool:
    """True when the header carries the expected CSRF token (compared in constant time)."""
    return bool(expected) and hmac.compare_digest(expected.encode(), (sent or "").encode())
