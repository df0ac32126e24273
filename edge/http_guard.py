"""Guards every HTTP service of ours (kiosk, central) puts in front of its routes.

- Request bodies are capped *before* they are read: a declared Content-Length over the cap is
  answered 413 at once, and a chunked body is counted as it streams and cut off at the cap, so a
  100 MiB POST costs neither memory nor the event loop's time.
- Validation errors never echo the input back (FastAPI's default 422 copies the whole offending
  value into the response): the error names the field and what is wrong, nothing more (a field
  name the client made up is not repeated either). An over-long body is answered 413 with
  `Connection: close`, so the server stops reading it instead of draining it.
- Integers beyond 64 bits are refused with 422 (SQLite and PostgreSQL cannot hold them; they used
  to surface as a 500).

Errors follow the house shape `{"detail": {"code", "message"}}`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

DEFAULT_MAX_BODY = 1024 * 1024  # 1 MiB
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class BodyTooLarge(Exception):
    """The request body grew past the cap while it streamed in."""


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": {"code": code, "message": message}}, status_code=status, headers=headers)


# An over-long body is answered and the connection closed: the server does not go on reading
# (and discarding) the rest of it, as it would to keep the connection alive.
_CLOSE = {"connection": "close"}


class BodyLimitMiddleware:
    """Pure ASGI middleware: refuses bodies over `max_body` bytes before the app reads them.

    `limits` maps a path prefix to its own cap (e.g. a bigger one for event uploads).
    """

    def __init__(self, app, max_body: int = DEFAULT_MAX_BODY, limits: dict[str, int] | None = None):
        self.app, self.max_body, self.limits = app, max_body, dict(limits or {})

    def _cap(self, path: str) -> int:
        best = self.max_body
        best_len = -1
        for prefix, cap in self.limits.items():
            if path.startswith(prefix) and len(prefix) > best_len:
                best, best_len = cap, len(prefix)
        return best

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self._cap(scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _error(400, "BAD_REQUEST", "Content-Length is not a number", _CLOSE)(scope, receive, send)
                    return
                if declared > cap:
                    await _error(413, "BODY_TOO_LARGE", f"request body over {cap} bytes", _CLOSE)(scope, receive, send)
                    return
        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _error(413, "BODY_TOO_LARGE", f"request body over {cap} bytes", _CLOSE)(scope, receive, send)


def _out_of_range_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not INT64_MIN <= value <= INT64_MAX
    if isinstance(value, dict):
        return any(_out_of_range_int(v) for v in value.values())
    if isinstance(value, list):
        return any(_out_of_range_int(v) for v in value)
    return False


def json_body_problem(raw: bytes) -> str | None:
    """What is wrong with a JSON body that our stores cannot take (an integer beyond 64 bits), or None."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None  # FastAPI reports malformed JSON itself
    return "an integer is out of range (64-bit)" if _out_of_range_int(value) else None


_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")


def _location(error: dict) -> str:
    """Where an error is, by our own field names only: a key the client made up is not repeated."""
    loc = [p for p in error.get("loc", ()) if p != "body"]
    if error.get("type") == "extra_forbidden" and loc:
        loc[-1] = "(unknown field)"
    shown = [str(p) if isinstance(p, int) or p == "(unknown field)" or _FIELD_NAME.match(str(p)) else "?"
             for p in loc]
    return ".".join(shown) or "body"


def _validation_summary(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        parts.append(f"{_location(error)}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


class IntegerBoundsMiddleware:
    """Pure ASGI middleware: a JSON body holding an integer beyond 64 bits is answered 422.

    The body (already capped by BodyLimitMiddleware, which sits outside this one) is read once,
    checked, and handed on to the app unchanged.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        content_type = next((v for k, v in scope.get("headers", []) if k == b"content-type"), b"")
        if b"json" not in content_type:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = json_body_problem(body)
        if problem is not None:
            await _error(422, "INVALID_REQUEST", problem)(scope, receive, send)
            return
        handed = False

        async def replay():
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def install_guards(app: FastAPI, *, max_body: int = DEFAULT_MAX_BODY, limits: dict[str, int] | None = None) -> None:
    """Body cap, input-free validation errors and 64-bit integer bounds for `app`."""

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "INVALID_REQUEST", _validation_summary(exc))

    app.add_middleware(IntegerBoundsMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_body=max_body, limits=limits)  # added last: outermost
