"""Officers log in on a full disk: a session needs no disk write to begin, and is written once it can be."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.users import UserStore
from tests.sync.test_disk_full import fill_disk, small_tmpfs


def test_log_in_on_a_full_disk_keeps_the_session_in_memory_until_space_returns(tmp_path: Path):
    with small_tmpfs(tmp_path / "disk", 2) as disk:
        path = disk / "users.sqlite"
        store = UserStore(path)
        try:
            user = store.add_user("sup", "supervisor-password-1", "supervisor", "HUUNGHI")
            with sqlite3.connect(path) as other:  # an empty WAL: the next write needs new space
                other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            fill_disk(disk / "filler")
            token, session = store.create_session(user, "127.0.0.1")
            assert store.session(token, touch=True) is not None, "the officer is logged in"
            assert store.session_count() == 0, "nothing could be written"
            assert store.flush_activity() is False
            assert store.session(token) is not None, "a failed write-back does not end the session"

            (disk / "filler").unlink()
            assert store.flush_activity() is True
            assert store.session_count() == 1
        finally:
            store.close()
        with UserStore(path) as again:  # written: it outlives a restart of the node
            found = again.session(token)
            assert found is not None and found.user.username == "sup" and found.csrf == session.csrf
