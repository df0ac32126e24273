"""Gate credentials: the bearer token each gate presents to central on every upload and feed pull.

Central issues one random token per gate (`smartgate central token --gate G`), keeps only its
SHA-256 digest, and answers 401 to a gate request whose token is missing or not that gate's. The
node reads its token from the site file (`central.token`) or from a file (`central.token_file`).
Tokens are random (256 bits from `secrets`), so a plain SHA-256 digest is enough to store them:
there is no password to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

TOKEN_CHARS = "A-Z a-z 0-9 - . _ ~ + / ="
_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{24,512}")


class TokenError(ValueError):
    """A token (or token file) that cannot be used; the message says what is wrong."""


def new_token() -> str:
    """A fresh random gate token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


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


def write_token_file(path: Path, token: str) -> None:
    """Write a token to `path` readable by its owner only (mode 600), replacing the file's content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def token_digest(token: str) -> str:
    """The hex SHA-256 digest central stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def digest_matches(stored_digest: str, token: str) -> bool:
    """Constant-time check of a presented token against a stored digest."""
    return hmac.compare_digest(stored_digest, token_digest(token))
