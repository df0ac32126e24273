"""Kiosk users, sessions and API tokens, in SQLite next to the node's other files (users.sqlite).

Passwords are hashed with scrypt (memory-hard: n=2**14, r=8, p=1 takes 16 MiB per hash), a
random salt per user, and compared in constant time. Sessions and API tokens are random secrets
of which only the SHA-256 is stored, so a copy of the file opens no session. A session ends after
`idle_timeout_s` without activity or `absolute_timeout_s` after login, whichever comes first, and
at once when its user is disabled. Checking a session writes nothing: activity is kept in memory
and written back lazily (`flush_activity`, off the request path), so a full or locked disk does
not log out an officer who is logged in. Wrong passwords never lock a name out: the kiosk slows
guessing down with growing delays per address, name and (address, name) pair
(edge/login_throttle.py); `smartgate users unlock` clears a name's delays in a running node.

Roles, lowest first: display (a wall board: sees the board, cannot act, and its session never
ends for want of input — only `display_timeout_s` after log-in, or when the user is disabled),
officer (release, refuse and send to inspection at their gate's lanes), supervisor (also
overrides a refusal and drives a barrier by hand), admin (also manages users).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

class Role(StrEnum):
    DISPLAY = "display"  # a wall board: reads only
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


_RANK = {Role.DISPLAY: 0, Role.OFFICER: 1, Role.SUPERVISOR: 2, Role.ADMIN: 3}

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
ALL_GATES = "*"
MIN_PASSWORD_LENGTH = 8

# scrypt parameters; kept in each hash so they can be raised later without breaking old hashes.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2**14, 8, 1, 32


class UserError(ValueError):
    """A user operation that cannot be done (unknown user, bad name or password, duplicate)."""


@dataclass(frozen=True)
class AuthSettings:
    """Session lifetimes, log-in throttling and the password-checking pool.

    Throttling (edge/login_throttle.py): after `free_failures` wrong passwords from one address for
    one name, each further attempt of that pair waits `first_delay_s`, then twice as long after
    every failure, up to `max_delay_s`; an address has `address_free_failures` over all names
    before the same growing delays. A name has `name_free_failures` over all addresses, and its
    delay never exceeds `name_max_delay_s`: that is the longest anyone can make the real user
    wait, and an address the user logged in from within `known_address_s` skips it. A key is
    forgotten `forget_after_s` after its last failure; a success clears its name and pair.
    """

    idle_timeout_s: float = 30 * 60
    absolute_timeout_s: float = 12 * 3600
    cookie_secure: bool = False  # set True when the kiosk is served over HTTPS
    free_failures: int = 3
    address_free_failures: int = 10
    name_free_failures: int = 10
    first_delay_s: float = 1.0
    max_delay_s: float = 15 * 60
    name_max_delay_s: float = 30.0
    forget_after_s: float = 60 * 60
    known_address_s: float = 30 * 24 * 3600
    hash_threads: int = 1  # scrypt threads (each hash takes one core for ~50 ms and 16 MiB)
    hash_queue: int = 8  # password checks that may wait for a thread; more are answered 503 at once
    hash_reserve: int = 4  # more places, served first, for addresses someone logged in from before
    activity_flush_s: float = 60.0  # how often session activity is written back (lazily, off the request path)
    display_timeout_s: float = 365 * 24 * 3600  # a wall board's session: no idle limit, this long after log-in


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    gate: str
    display_name: str
    disabled: bool
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"username": self.username, "role": self.role.value, "gate": self.gate,
                "display_name": self.display_name or self.username, "disabled": self.disabled,
                "created_at": self.created_at}

    def may_act_at(self, gate: str) -> bool:
        """True when the user may act on lanes at this gate (a display never may)."""
        return self.role != Role.DISPLAY and (self.gate == ALL_GATES or self.gate == gate)


@dataclass(frozen=True)
class Session:
    user: User
    token_hash: str
    csrf: str
    created_at: float
    last_seen: float
    expires_at: float  # the earlier of the idle and the absolute expiry, as of last_seen


class LoginResult(StrEnum):
    OK = "ok"
    BAD = "bad"  # wrong name or password, or a disabled user: the caller cannot tell which
    THROTTLED = "throttled"  # too many recent failures from this address or for this name: wait
    BUSY = "busy"  # too many password checks waiting already: try again in a moment


# ---------------------------------------------------------------- passwords


def hash_password(password: str) -> str:
    """scrypt$n$r$p$salt$hash (base64) for a password."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=SCRYPT_DKLEN)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches the stored hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


_DUMMY_HASH = hash_password(secrets.token_hex(8))  # checked for unknown users: same time either way


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- the store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY COLLATE NOCASE,
    role TEXT NOT NULL,
    gate TEXT NOT NULL,
    display_name TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL COLLATE NOCASE REFERENCES users(username),
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    client TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(username);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL COLLATE NOCASE REFERENCES users(username),
    label TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    last_used REAL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS login_unlocks (
    username TEXT PRIMARY KEY COLLATE NOCASE,
    at REAL NOT NULL
);
DROP TABLE IF EXISTS login_failures;
"""

_USER_COLUMNS = "username, role, gate, display_name, disabled, created_at"
_U_COLUMNS = ", ".join("u." + column.strip() for column in _USER_COLUMNS.split(","))


def _user(row: tuple) -> User:
    return User(row[0], Role(row[1]), row[2], row[3], bool(row[4]), row[5])


class UserStore:
    """Users, sessions, API tokens and `unlock` requests in one SQLite file. Thread-safe."""

    def __init__(self, path: str | Path, settings: AuthSettings | None = None,
                 clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.settings = settings or AuthSettings()
        self.clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SCHEMA)
        # Activity not yet written back: session token hash -> last seen, API token hash -> last used.
        self._seen: dict[str, float] = {}
        self._used: dict[str, float] = {}
        self._dirty: set[str] = set()
        self._ended: set[str] = set()  # sessions logged out while the file could not be written
        # Sessions begun while the file could not be written (a full disk): token hash -> (user, csrf, created, client).
        # They work from memory and are written at the next activity flush that succeeds.
        self._unsaved: dict[str, tuple[str, str, float, str]] = {}
        self._activity_lock = threading.Lock()
        self._flushed_at = self.clock()
        self.flush_failures = 0

    def close(self) -> None:
        self.flush_activity()
        with self._lock:
            self._conn.close()

    def __enter__(self) -> UserStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _one(self, sql: str, params: tuple = ()) -> tuple | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def _exec(self, sql: str, params: tuple = ()) -> int:
        with self._lock:
            return self._conn.execute(sql, params).rowcount

    # ------------------------------------------------------------ users

    def add_user(self, username: str, password: str, role: Role | str, gate: str,
                 display_name: str = "", *, check_password: bool = True) -> User:
        """Create a user; UserError when the name is taken or invalid, or the password too short.

        check_password=False skips the length rule (only for the demo's well-known users).
        """
        if not USERNAME_RE.match(username):
            raise UserError("user name: letters, digits, '.', '_' or '-', at most 64, starting with a letter or digit")
        try:
            role = Role(role)
        except ValueError as exc:
            raise UserError(f"role must be one of {', '.join(r.value for r in Role)}") from exc
        if not gate or not (gate == ALL_GATES or re.match(r"^[A-Z0-9_\-]+$", gate)):
            raise UserError("gate: a gate code such as HUUNGHI, or * for every gate")
        if check_password:
            _check_password(password)
        now = self.clock()
        password_hash = hash_password(password)
        try:
            self._exec("INSERT INTO users (username, role, gate, display_name, password_hash, disabled, "
                       "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                       (username, role.value, gate, display_name.strip()[:100], password_hash, now, now))
        except sqlite3.IntegrityError as exc:
            raise UserError(f"user {username!r} exists already") from exc
        user = self.get_user(username)
        assert user is not None
        return user

    def get_user(self, username: str) -> User | None:
        row = self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (username,))
        return None if row is None else _user(row)

    def list_users(self) -> list[User]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username").fetchall()
        return [_user(row) for row in rows]

    def set_disabled(self, username: str, disabled: bool) -> User:
        """Disable (or enable) a user. Disabling ends their sessions and stops their API tokens."""
        with self._lock:
            changed = self._conn.execute("UPDATE users SET disabled = ?, updated_at = ? WHERE username = ?",
                                         (int(disabled), self.clock(), username)).rowcount
            if changed and disabled:
                self._conn.execute("DELETE FROM sessions WHERE username = ?", (username,))
        if not changed:
            raise UserError(f"no user {username!r}")
        user = self.get_user(username)
        assert user is not None
        return user

    def set_password(self, username: str, password: str) -> None:
        """Change a password; the user's sessions end."""
        _check_password(password)
        password_hash = hash_password(password)
        with self._lock:
            changed = self._conn.execute("UPDATE users SET password_hash = ?, updated_at = ? WHERE username = ?",
                                         (password_hash, self.clock(), username)).rowcount
            self._conn.execute("DELETE FROM sessions WHERE username = ?", (username,))
        if not changed:
            raise UserError(f"no user {username!r}")

    # ------------------------------------------------------------ login

    def authenticate(self, username: str, password: str) -> tuple[LoginResult, User | None]:
        """Check a password: (OK, user) or (BAD, None). Costs one scrypt (~50 ms of one core).

        Blocking: the kiosk calls it from its bounded password pool, after its throttle
        (edge/login_throttle.py) let the attempt through.
        """
        key = username.strip()[:64]
        stored = self._one("SELECT password_hash FROM users WHERE username = ? AND disabled = 0", (key,))
        # An unknown or disabled name costs one scrypt too, so timing does not tell it apart.
        matches = verify_password(password, stored[0] if stored else _DUMMY_HASH)
        if matches and stored is not None:
            return LoginResult.OK, self.get_user(key)
        return LoginResult.BAD, None

    def unlock(self, username: str) -> None:
        """Ask the running node to clear a name's log-in delays (it reads this within a second or so)."""
        now = self.clock()
        with self._lock:
            self._conn.execute("INSERT INTO login_unlocks (username, at) VALUES (?, ?) "
                               "ON CONFLICT(username) DO UPDATE SET at = excluded.at", (username.strip()[:64], now))
            self._conn.execute("DELETE FROM login_unlocks WHERE at < ?", (now - 86400,))

    def unlocks_since(self, since: float) -> list[tuple[str, float]]:
        """(name, when) of every `unlock` asked for after `since`."""
        with self._lock:
            return self._conn.execute("SELECT username, at FROM login_unlocks WHERE at > ?", (since,)).fetchall()

    # ------------------------------------------------------------ sessions

    def create_session(self, user: User, client: str = "") -> tuple[str, Session]:
        """A new session for a user who just logged in; returns (secret token, session)."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self.clock()
        token_hash = _sha256(token)
        try:
            with self._lock:
                # Old sessions are swept here, so the table never grows without bound.
                self._conn.execute(
                    "DELETE FROM sessions WHERE token_hash IN (SELECT s.token_hash FROM sessions s "
                    "JOIN users u ON u.username = s.username WHERE CASE WHEN u.role = 'display' "
                    "THEN s.created_at < ? ELSE s.created_at < ? OR s.last_seen < ? END)",
                    (now - self.settings.display_timeout_s, now - self.settings.absolute_timeout_s,
                     now - self.settings.idle_timeout_s))
                self._conn.execute("INSERT INTO sessions (token_hash, username, csrf, created_at, last_seen, client) "
                                   "VALUES (?, ?, ?, ?, ?, ?)",
                                   (token_hash, user.username, csrf, now, now, client[:200]))
        except sqlite3.Error as exc:
            # A full disk must not lock the officers out (they close the barrier by hand): the session
            # lives in memory and is written once the file takes writes again.
            if not self._unsaved:
                log.warning("could not write a new session (kept in memory until the file can be written): %s", exc)
            with self._activity_lock:
                self._unsaved[token_hash] = (user.username, csrf, now, client[:200])
                self._dirty.add(token_hash)
                self._seen[token_hash] = now
        return token, Session(user, token_hash, csrf, now, now, self._expiry(user, now, now))

    def _expiry(self, user: User, created_at: float, last_seen: float) -> float:
        """When a session ends: a display's only `display_timeout_s` after log-in (a wall board has no input)."""
        if user.role == Role.DISPLAY:
            return created_at + self.settings.display_timeout_s
        return min(created_at + self.settings.absolute_timeout_s, last_seen + self.settings.idle_timeout_s)

    def session(self, token: str | None, touch: bool = False) -> Session | None:
        """The live session for a token, or None (unknown, expired, or its user disabled).

        Reads only: touch=True counts this as activity (moves the idle expiry) in memory, and
        `flush_activity` writes it back later, so a full disk never ends a live session.
        """
        if not token or len(token) > 200:
            return None
        token_hash = _sha256(token)
        now = self.clock()
        row = self._one(
            f"SELECT s.csrf, s.created_at, s.last_seen, {_U_COLUMNS} "
            "FROM sessions s JOIN users u ON u.username = s.username WHERE s.token_hash = ?", (token_hash,))
        unsaved = self._unsaved.get(token_hash) if row is None else None
        if unsaved is not None:
            user_row = self._one(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?", (unsaved[0],))
            row = None if user_row is None else (unsaved[1], unsaved[2], unsaved[2], *user_row)
        if row is None or token_hash in self._ended:
            return None
        csrf, created_at = row[0], row[1]
        last_seen = max(row[2], self._seen.get(token_hash, 0.0))
        user = _user(row[3:])
        if user.disabled or now >= self._expiry(user, created_at, last_seen):
            return None  # expired rows are swept at the next login
        if touch:
            last_seen = now
            with self._activity_lock:
                self._seen[token_hash] = now
                self._dirty.add(token_hash)
        return Session(user, token_hash, csrf, created_at, last_seen, self._expiry(user, created_at, last_seen))

    def flush_due(self) -> bool:
        """True when there is activity older than `activity_flush_s` not yet written back."""
        return bool(self._dirty) and self.clock() - self._flushed_at >= self.settings.activity_flush_s

    def flush_activity(self) -> bool:
        """Write session and API-token activity back to the file; False (logged, kept in memory) on failure."""
        self._flushed_at = self.clock()
        with self._activity_lock:
            dirty, self._dirty = self._dirty, set()
            seen = [(self._seen[h], h) for h in dirty if h in self._seen]
            used = [(self._used[h], h) for h in dirty if h in self._used]
            unsaved = dict(self._unsaved)
        if not dirty:
            return True
        try:
            with self._lock:
                # Another writer (`smartgate users` in a shell) gets a short wait, not the usual 10 s:
                # nothing waits for this write, and the next flush tries again.
                self._conn.execute("PRAGMA busy_timeout = 250")
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        self._conn.executemany(
                            "INSERT OR IGNORE INTO sessions (token_hash, username, csrf, created_at, last_seen, "
                            "client) VALUES (?, ?, ?, ?, ?, ?)",
                            [(h, name, csrf, at, at, client) for h, (name, csrf, at, client) in unsaved.items()])
                        self._conn.executemany(
                            "UPDATE sessions SET last_seen = max(last_seen, ?) WHERE token_hash = ?", seen)
                        self._conn.executemany("UPDATE api_tokens SET last_used = ? WHERE token_hash = ?", used)
                        self._conn.execute("COMMIT")
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
                finally:
                    self._conn.execute("PRAGMA busy_timeout = 10000")
        except sqlite3.Error as exc:
            with self._activity_lock:
                self._dirty |= dirty
            self.flush_failures += 1
            log.warning("could not write session activity back (kept in memory): %s", exc)
            return False
        # Forget what no session can still need (idle for longer than the idle limit).
        horizon = self._flushed_at - self.settings.idle_timeout_s
        with self._activity_lock:
            for h in unsaved:
                self._unsaved.pop(h, None)
            for table in (self._seen, self._used):
                for h in [h for h, at in table.items() if at < horizon and h not in self._dirty]:
                    del table[h]
        return True

    def end_session(self, token_hash: str) -> None:
        """Log a session out; if the file cannot be written now, the session still ends (in memory)."""
        try:
            self._exec("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
        except sqlite3.Error as exc:
            self._ended.add(token_hash)
            log.warning("could not delete a logged-out session (ended in memory): %s", exc)

    def session_count(self, username: str | None = None) -> int:
        if username is None:
            return self._one("SELECT count(*) FROM sessions")[0]  # type: ignore[index]
        return self._one("SELECT count(*) FROM sessions WHERE username = ?", (username,))[0]  # type: ignore[index]

    # ------------------------------------------------------------ API tokens

    def create_token(self, username: str, label: str = "") -> str:
        """A new API token (shown once) acting as `username`: for machines, sent as Bearer."""
        if self.get_user(username) is None:
            raise UserError(f"no user {username!r}")
        token = "sgt_" + secrets.token_urlsafe(32)
        self._exec("INSERT INTO api_tokens (token_hash, username, label, created_at) VALUES (?, ?, ?, ?)",
                   (_sha256(token), username, label[:100], self.clock()))
        return token

    def token_user(self, token: str | None) -> User | None:
        """The enabled user an API token acts as, or None."""
        if not token or len(token) > 200:
            return None
        token_hash = _sha256(token)
        row = self._one(f"SELECT {_U_COLUMNS} "
                        "FROM api_tokens t JOIN users u ON u.username = t.username "
                        "WHERE t.token_hash = ? AND t.revoked = 0", (token_hash,))
        if row is None:
            return None
        user = _user(row)
        if user.disabled:
            return None
        with self._activity_lock:  # written back by flush_activity, like session activity
            self._used[token_hash] = self.clock()
            self._dirty.add(token_hash)
        return user

    def revoke_tokens(self, username: str) -> int:
        """Revoke every API token of a user; returns how many."""
        return self._exec("UPDATE api_tokens SET revoked = 1 WHERE username = ? AND revoked = 0", (username,))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise UserError("password: at most 1024 characters")


# ---------------------------------------------------------------- the demo's users

DEMO_USERS = (("officer", "officer", Role.OFFICER), ("supervisor", "supervisor", Role.SUPERVISOR),
              ("admin", "admin", Role.ADMIN))


def create_demo_users(data_dir: str | Path) -> list[tuple[str, str, str]]:
    """Well-known users for `smartgate demo` only (name = password); never made by `smartgate run`.

    Returns (name, password, role) for each, created now or found from an earlier demo run.
    """
    with UserStore(Path(data_dir) / "users.sqlite") as store:
        for name, password, role in DEMO_USERS:
            if store.get_user(name) is None:
                store.add_user(name, password, role, ALL_GATES, f"Demo {role.value}", check_password=False)
    return [(name, password, role.value) for name, password, role in DEMO_USERS]


# ---------------------------------------------------------------- `smartgate users`


def add_users_parser(sub: Any, site_args: Callable[[Any], None]) -> None:
    """The `smartgate users ...` subcommands (wired in edge/cli.py)."""
    users = sub.add_parser("users", help="kiosk users: add (--role display for a wall board), disable, enable, "
                                          "list, passwd, token, unlock")
    commands = users.add_subparsers(dest="users_cmd", required=True)

    def command(name: str, help_text: str, with_user: bool = True) -> Any:
        p = commands.add_parser(name, help=help_text)
        if with_user:
            p.add_argument("username")
        site_args(p)
        p.set_defaults(func=run_users_command)
        return p

    p = command("add", "create a user (asks for the password, or reads it from stdin with --password-stdin)")
    p.add_argument("--role", required=True, choices=[r.value for r in Role],
                   help="display: a wall board that shows the lanes, never acts and is never logged out for "
                        "idleness; officer, supervisor, admin: people")
    p.add_argument("--gate", help="gate code the user acts at, or * for every gate (default: the site's gate)")
    p.add_argument("--name", default="", help="full name shown on the kiosk")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    command("disable", "disable a user: their sessions end and their API tokens stop working")
    command("enable", "enable a disabled user")
    command("list", "list users", with_user=False)
    p = command("passwd", "set a user's password (their sessions end)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p = command("token", "create an API token acting as a user (printed once; send as 'Authorization: Bearer')")
    p.add_argument("--label", default="", help="what the token is for")
    command("unlock", "clear a name's log-in delays after wrong passwords (a running node sees it at once)")


def _read_password(from_stdin: bool) -> str:
    import getpass
    import sys

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise UserError("the two passwords differ")
    return first


def run_users_command(args: Any) -> int:
    """Carry out one `smartgate users` subcommand; 0 on success, 1 with a message on stderr otherwise."""
    import json
    import sys

    from edge.config import check_data_dir, load_site

    loaded = load_site(args.site)
    data_dir = check_data_dir(Path(args.data_dir or loaded.site.data_dir), given=bool(args.data_dir), writes=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with UserStore(data_dir / "users.sqlite") as store:
            cmd = args.users_cmd
            if cmd == "add":
                user = store.add_user(args.username, _read_password(args.password_stdin), args.role,
                                      args.gate or loaded.site.gate, args.name)
                print(f"added {user.role.value} {user.username} at gate {user.gate}")
            elif cmd in ("disable", "enable"):
                user = store.set_disabled(args.username, cmd == "disable")
                if cmd == "disable":
                    store.revoke_tokens(user.username)
                print(f"{user.username} {cmd}d")
            elif cmd == "list":
                for user in store.list_users():
                    print(json.dumps(user.to_dict(), ensure_ascii=False))
            elif cmd == "passwd":
                store.set_password(args.username, _read_password(args.password_stdin))
                print(f"password of {args.username} changed; their sessions have ended")
            elif cmd == "token":
                print(store.create_token(args.username, args.label))
            elif cmd == "unlock":
                store.unlock(args.username)
                print(f"{args.username}: log-in delays cleared")
    except UserError as exc:
        print(f"smartgate users {args.users_cmd}: {exc}", file=sys.stderr)
        return 1
    return 0
