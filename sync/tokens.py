"""Gate credentials: the bearer token each gate presents to central on every upload and feed pull.

Central issues one random token per gate (`smartgate central token --gate G`), keeps only its
SHA-256 digest, and answers 401 to a gate request whose token is missing or not that gate's. The
node reads its token from the site file (`central.token`) or from a file (`central.token_file`).
Tokens are random (256 bits from `secrets`), so a plain SHA-256 digest is enough to store them:
there is no password to brute-force. The token's form (`token_problem`, `read_token_file`) is
checked by the site loader, so it lives in `edge/token_format.py` and is re-exported here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from edge.token_format import TOKEN_CHARS, TokenError, read_token_file, token_problem

__all__ = ["TOKEN_CHARS", "TokenError", "digest_matches", "new_token", "read_token_file", "token_digest",
           "token_problem", "write_token_file"]


def new_token() -> str:
    """A fresh random gate token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


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
