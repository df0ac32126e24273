"""Guards every HTTP service of ours (kiosk, central) puts in front of its routes.

- Request bodies are capped *before* they are read: a declared Content-Length over the cap is
  answered 413 at once, and a chunked body is counted as it streams and cut off at the cap, so a
  100 MiB POST costs neither memory nor the event loop's time. A 413 closes the connection
  (`Connection: close`), so the server does not drain the rest of the body either.
- Validation errors never echo the input back (FastAPI's default 422 copies the whole offending
  value into the response): the error names the field and what is wrong, nothing more.
- Integers beyond 64 bits are refused with 422 (SQLite and PostgreSQL cannot hold them; they used
  to surface as a 500).

Errors follow the house shape `{"detail": {"code", "message"}}`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

DEFAULT_MAX_BODY = 1024 * 1024  # 1 MiB
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class BodyTooLarge(Exception):
    """The request body grew past the cap while it streamed in."""


def _error(status: int, code: str, message: str) -> JSONResponse:
    # A refused body is never read: closing the connection stops the server draining the rest of it.
    headers = {"Connection": "close"} if status == 413 else None
    return JSONResponse({"detail": {"code": code, "message": message}}, status_code=status, headers=headers)


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
                    await _error(400, "BAD_REQUEST", "Content-Length is not a number")(scope, receive, send)
                    return
                if declared > cap:
                    await _error(413, "BODY_TOO_LARGE", f"request body over {cap} bytes")(scope, receive, send)
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
                await _error(413, "BODY_TOO_LARGE", f"request body over {cap} bytes")(scope, receive, send)


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


def _validation_summary(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_guards(app: FastAPI, *, max_body: int = DEFAULT_MAX_BODY, limits: dict[str, int] | None = None) -> None:
    """Body cap, input-free validation errors and 64-bit integer bounds for `app`."""

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "INVALID_REQUEST", _validation_summary(exc))

    @app.middleware("http")
    async def _integer_bounds(request: Request, call_next):
        if request.method in ("POST", "PUT", "PATCH") and "json" in request.headers.get("content-type", ""):
            problem = json_body_problem(await request.body())
            if problem is not None:
                return _error(422, "INVALID_REQUEST", problem)
        return await call_next(request)

    app.add_middleware(BodyLimitMiddleware, max_body=max_body, limits=limits)
