"""The form of a gate token and how a token file is read: checked by the site loader, used by sync.

The node validates `central.token` / `central.token_file` when it loads the site file, before any
sync code runs, so the check lives here, below both `edge/config.py` and `sync/tokens.py` (which
issues, stores and compares tokens and re-exports these names).
"""

from __future__ import annotations

import re
from pathlib import Path

TOKEN_CHARS = "A-Z a-z 0-9 - . _ ~ + / ="
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{24,512}")


class TokenError(ValueError):
    """A token (or token file) that cannot be used; the message says what is wrong."""


def token_problem(token: str) -> str | None:
    """What is wrong with a token's form, or None when it is well formed."""
    if not isinstance(token, str) or not token:
        return "the token is empty"
    if any(ch.isspace() for ch in token):
        return "the token contains spaces or line breaks"
    if len(token) < 24:
        return f"the token is {len(token)} characters long; gate tokens have at least 24"
    if not _TOKEN.fullmatch(token):
        return f"the token may only contain {TOKEN_CHARS} (at most 512 characters)"
    return None


def read_token_file(path: Path) -> str:
    """The token held in a file (one line; a trailing newline is fine). TokenError says why not."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TokenError(f"cannot read {path} ({reason})") from exc
    token = text.removesuffix("\n").removesuffix("\r")
    problem = token_problem(token)
    if problem is not None:
        raise TokenError(f"{path}: {problem}")
    return token
