"""Users, passwords, sessions, tokens and unlock requests (edge/users.py), with a clock the test moves."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge.users import (
    AuthSettings,
    LoginResult,
    Role,
    UserError,
    UserStore,
    create_demo_users,
    hash_password,
    verify_password,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock):
    settings = AuthSettings(idle_timeout_s=600, absolute_timeout_s=3600, activity_flush_s=60)
    with UserStore(tmp_path / "users.sqlite", settings, clock=clock) as users:
        users.add_user("an", "an-password-1", "officer", "HUUNGHI", "Nguyen Van An")
        yield users


def test_passwords_are_salted_scrypt_hashes_checked_in_constant_time():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("scrypt$16384$8$1$") and first != second  # a salt per hash
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct horsE", first)
    assert not verify_password("x", "not-a-hash") and not verify_password("x", "bcrypt$1$2$3$4$5")


def test_the_database_holds_no_password_and_no_session_secret(store: UserStore, tmp_path: Path):
    token, _ = store.create_session(store.get_user("an"))
    api_token = store.create_token("an", "gate display")
    raw = (tmp_path / "users.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("users.sqlite-*"))
    for secret in ("an-password-1", token, api_token):
        assert secret.encode() not in raw


def test_user_rules(store: UserStore):
    with pytest.raises(UserError, match="exists"):
        store.add_user("AN", "another-pass", "officer", "HUUNGHI")  # names are case-insensitive
    with pytest.raises(UserError, match="at least 8"):
        store.add_user("binh", "short", "officer", "HUUNGHI")
    with pytest.raises(UserError, match="role"):
        store.add_user("binh", "long-enough", "chief", "HUUNGHI")
    with pytest.raises(UserError, match="user name"):
        store.add_user("bad name!", "long-enough", "officer", "HUUNGHI")
    with pytest.raises(UserError, match="gate"):
        store.add_user("binh", "long-enough", "officer", "huu nghi")
    user = store.add_user("binh", "long-enough", "supervisor", "*")
    assert user.may_act_at("HUUNGHI") and user.may_act_at("LAOBAO")
    assert not store.get_user("an").may_act_at("LAOBAO")
    assert Role.ADMIN.at_least(Role.SUPERVISOR) and not Role.OFFICER.at_least(Role.SUPERVISOR)


def test_login_checks_the_password_and_never_locks_a_name(store: UserStore):
    assert store.authenticate("an", "an-password-1")[0] == LoginResult.OK
    assert store.authenticate("AN", "an-password-1")[1].username == "an"  # names are case-insensitive
    # No lock-out in the store: delays are the kiosk's throttle (tests/kiosk/test_login_throttle.py).
    for _ in range(6):
        assert store.authenticate("an", "wrong") == (LoginResult.BAD, None)
        assert store.authenticate("nobody", "wrong") == (LoginResult.BAD, None)
    assert store.authenticate("an", "an-password-1")[0] == LoginResult.OK


def test_unlock_requests_reach_a_running_node_through_the_file(store: UserStore, clock: Clock, tmp_path: Path):
    since = clock.now
    clock.now += 5
    with UserStore(tmp_path / "users.sqlite", clock=clock) as shell:  # `smartgate users unlock` elsewhere
        shell.unlock("An")
    assert store.unlocks_since(since) == [("An", clock.now)]
    assert store.unlocks_since(clock.now) == []


def test_disabled_user_cannot_log_in_and_their_sessions_and_tokens_stop(store: UserStore):
    user = store.get_user("an")
    token, session = store.create_session(user)
    api_token = store.create_token("an")
    assert store.session(token).user.username == "an" and store.token_user(api_token).username == "an"
    store.set_disabled("an", True)
    assert store.session(token) is None and store.token_user(api_token) is None
    assert store.authenticate("an", "an-password-1") == (LoginResult.BAD, None)
    store.set_disabled("an", False)
    assert store.session(token) is None  # ended for good
    assert store.token_user(api_token) is not None
    assert store.revoke_tokens("an") == 1 and store.token_user(api_token) is None
    with pytest.raises(UserError):
        store.set_disabled("nobody", True)


def test_sessions_expire_when_idle_and_after_the_absolute_limit(store: UserStore, clock: Clock):
    user = store.get_user("an")
    token, session = store.create_session(user)
    assert session.expires_at == clock.now + 600
    clock.now += 500
    assert store.session(token, touch=False) is not None  # looking does not count as activity
    clock.now += 101
    assert store.session(token) is None  # idle for 601 s
    token, _ = store.create_session(user)
    for _ in range(6):  # active every 9 minutes: the idle limit never bites...
        clock.now += 540
        assert store.session(token, touch=True) is not None
    clock.now += 540
    assert store.session(token, touch=True) is None  # ...but the shift's absolute limit (1 h) does
    assert store.session("made-up") is None and store.session("") is None and store.session("x" * 500) is None


def test_password_change_ends_sessions(store: UserStore):
    token, _ = store.create_session(store.get_user("an"))
    store.set_password("an", "new-password-2")
    assert store.session(token) is None
    assert store.authenticate("an", "new-password-2")[0] == LoginResult.OK


def test_demo_users_are_only_made_on_request(tmp_path: Path):
    made = create_demo_users(tmp_path)
    assert {(name, role) for name, _, role in made} == {("officer", "officer"), ("supervisor", "supervisor"),
                                                        ("admin", "admin")}
    assert create_demo_users(tmp_path) == made  # a second demo run finds them
    with UserStore(tmp_path / "users.sqlite") as users:
        assert users.authenticate("supervisor", "supervisor")[0] == LoginResult.OK


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", "users", *args], input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_users_command(tmp_path: Path):
    data = ["--data-dir", str(tmp_path)]
    added = _cli("add", "chi", "--role", "supervisor", "--name", "Pham Thi Chi", "--password-stdin", *data,
                 stdin="chi-password-9\n")
    assert added.returncode == 0, added.stderr
    assert "supervisor chi at gate HUUNGHI" in added.stdout
    assert _cli("add", "chi", "--role", "officer", "--password-stdin", *data, stdin="other-pass-9\n").returncode == 1
    short = _cli("add", "dung", "--role", "officer", "--password-stdin", *data, stdin="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    token = _cli("token", "chi", "--label", "central monitor", *data).stdout.strip()
    assert token.startswith("sgt_")
    assert '"username": "chi"' in _cli("list", *data).stdout
    assert _cli("disable", "chi", *data).returncode == 0
    with UserStore(tmp_path / "users.sqlite") as users:
        assert users.get_user("chi").disabled and users.token_user(token) is None
    assert _cli("enable", "chi", *data).returncode == 0
    assert _cli("passwd", "chi", "--password-stdin", *data, stdin="chi-password-10\n").returncode == 0
    with UserStore(tmp_path / "users.sqlite") as users:
        assert users.authenticate("chi", "chi-password-10")[0] == LoginResult.OK
    assert _cli("disable", "nobody", *data).returncode == 1
    unlocked = _cli("unlock", "chi", *data)
    assert unlocked.returncode == 0 and "delays cleared" in unlocked.stdout
    with UserStore(tmp_path / "users.sqlite") as users:
        assert [name for name, _ in users.unlocks_since(0)] == ["chi"]
    no_tty = _cli("add", "em", "--role", "officer", *data)
    assert no_tty.returncode == 1 and "--password-stdin" in no_tty.stderr


def test_checking_a_session_writes_nothing_and_a_blocked_disk_does_not_end_it(store: UserStore, clock: Clock,
                                                                              tmp_path: Path):
    token, session = store.create_session(store.get_user("an"))
    other = sqlite3.connect(tmp_path / "users.sqlite", isolation_level=None, timeout=0.1)

    def stored_last_seen() -> float:
        return other.execute("SELECT last_seen FROM sessions WHERE token_hash = ?", (session.token_hash,)).fetchone()[0]

    for _ in range(8):  # an officer working for 40 minutes: every request is a read
        clock.now += 300
        assert store.session(token, touch=True) is not None
    assert stored_last_seen() == session.created_at
    assert store.flush_due()
    # Another writer holds the file (as a full disk would refuse the write): the flush gives up
    # quickly, the activity stays in memory and the officer stays logged in.
    other.execute("BEGIN IMMEDIATE")
    assert store.flush_activity() is False and store.flush_failures == 1
    clock.now += 300
    assert store.session(token, touch=True) is not None
    other.execute("ROLLBACK")
    assert store.flush_activity() is True
    assert stored_last_seen() == clock.now
    # A node restarted after the flush finds the session where the officer left it.
    with UserStore(tmp_path / "users.sqlite", store.settings, clock=clock) as restarted:
        clock.now += 500
        assert restarted.session(token) is not None
    other.close()
