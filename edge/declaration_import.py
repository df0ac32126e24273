"""Loads a file of declarations (CSV, JSON or JSON lines) into the cache, reporting bad rows by line."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from edge.cache import DeclarationCache
from edge.declarations import Declaration, DeclarationError, declaration_from_mapping, publication_problem

SUFFIXES = (".csv", ".json", ".jsonl", ".ndjson")
_REQUIRED_COLUMNS = ("number", "kind", "gate", "channel", "status", "valid_until")
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class RowError:
    """One row that was not imported: the line it starts on (1-based) and why."""

    line: int
    message: str


@dataclass(slots=True)
class ImportReport:
    """What an import did. `skipped` counts every row not applied: bad rows (listed in `errors`) and
    rows whose version is older than the one already cached (not errors)."""

    imported: int = 0
    skipped: int = 0
    errors: list[RowError] = field(default_factory=list)


def import_declarations(cache: DeclarationCache, path: Path, now: datetime | None = None) -> ImportReport:
    """Import the declarations in `path` (.csv, .json, .jsonl or .ndjson) into `cache`.

    A bad row is reported with its line and skipped; the others are imported, the whole file in one
    transaction written in batches. A file that cannot be read, has an unknown extension, a CSV header
    without the required columns, or broken JSON syntax raises DeclarationError and imports nothing.
    When the file was taken in and it held at least one good row (or no rows at all), the cache is
    marked refreshed at `now` (default: the current time).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DeclarationError(
            f"cannot import {suffix or 'a file without extension'!s}: give a .csv, .json, .jsonl or .ndjson file"
        )
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            report = ImportReport()
            if suffix == ".csv":
                rows = _csv_rows(handle)
            elif suffix == ".json":
                rows = _json_rows(handle.read())
            else:
                rows = _jsonl_rows(handle)
            valid = 0

            def declarations() -> Iterator[Declaration]:
                nonlocal valid
                for line, row in rows:
                    if isinstance(row, RowError):
                        report.errors.append(row)
                        continue
                    try:
                        declaration = declaration_from_mapping(row)
                    except DeclarationError as exc:
                        report.errors.append(RowError(line, str(exc)))
                        continue
                    problem = publication_problem(declaration)
                    if problem is not None:
                        report.errors.append(RowError(line, problem))
                        continue
                    valid += 1
                    yield declaration

            report.imported = cache.upsert_many(declarations())
    except UnicodeDecodeError as exc:
        raise DeclarationError(f"cannot read {path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                               "save it as UTF-8") from None
    except OSError as exc:
        raise DeclarationError(f"cannot read {path}: {exc.strerror or exc}") from None
    report.skipped = valid - report.imported + len(report.errors)
    if valid or not report.errors:
        cache.mark_refreshed(datetime.now(UTC) if now is None else now)
    return report


def _csv_rows(handle: TextIO) -> Iterator[tuple[int, dict[str, str] | RowError]]:
    """(line the record starts on, row dict or RowError) for each data record of a CSV file."""
    reader = csv.reader(handle)
    header: list[str] | None = None
    last_line = 0
    try:
        for record in reader:
            line = last_line + 1
            last_line = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue  # blank line
            if header is None:
                header = [name.strip().lower() for name in record]
                missing = [name for name in _REQUIRED_COLUMNS if name not in header]
                if missing:
                    raise DeclarationError(
                        f"CSV header (line {line}) lacks column(s) {', '.join(missing)}; the header must name "
                        f"{', '.join(_REQUIRED_COLUMNS)} (and may add plates, containers, seals, "
                        "gross_weight_kg, valid_from, version)"
                    )
                continue
            if len(record) != len(header):
                yield line, RowError(line, f"row has {len(record)} fields but the header has {len(header)}; "
                                           "quote fields that contain commas")
                continue
            yield line, dict(zip(header, record, strict=True))
    except csv.Error as exc:
        raise DeclarationError(f"CSV unreadable at line {reader.line_num}: {exc}") from None
    if header is None:
        raise DeclarationError("CSV file is empty; it needs a header row naming " + ", ".join(_REQUIRED_COLUMNS))


def _jsonl_rows(handle: TextIO) -> Iterator[tuple[int, Any]]:
    """(line number, object or RowError) for each non-blank line of a JSON-lines file."""
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, RowError(line, f"not valid JSON ({exc.msg} at column {exc.colno}); one object per line")
            continue
        if not isinstance(value, dict):
            yield line, RowError(line, f"expected a JSON object, got {_json_type(value)}")
            continue
        yield line, value


def _json_rows(text: str) -> Iterator[tuple[int, Any]]:
    """(line the element starts on, object or RowError) for each element of the declarations array.

    The file is a JSON array of objects, or an object whose "declarations" key holds that array.
    Elements are decoded one at a time with raw_decode so that each one's starting offset is known.
    """
    tracker = _LineTracker(text)
    position = _skip(text, 0)
    if text.startswith("[", position):
        position = yield from _json_array(text, position, tracker)
    elif text.startswith("{", position):
        found = False
        position = _skip(text, position + 1)
        if text.startswith("}", position):
            position += 1
        else:
            while True:
                key, position = _decode(text, position)
                if not isinstance(key, str):
                    raise _syntax_error(text, position, "expected a key string")
                position = _skip(text, position)
                if not text.startswith(":", position):
                    raise _syntax_error(text, position, "expected ':'")
                position = _skip(text, position + 1)
                if key == "declarations":
                    if not text.startswith("[", position):
                        raise DeclarationError(f"line {tracker.line(position)}: \"declarations\" must be a list")
                    found = True
                    position = yield from _json_array(text, position, tracker)
                else:
                    _, position = _decode(text, position)
                position = _skip(text, position)
                if text.startswith(",", position):
                    position = _skip(text, position + 1)
                elif text.startswith("}", position):
                    position += 1
                    break
                else:
                    raise _syntax_error(text, position, "expected ',' or '}'")
        if not found:
            raise DeclarationError('JSON object has no "declarations" list; give a list of declarations, '
                                   'or {"declarations": [...]}')
    else:
        raise DeclarationError("JSON file must hold a list of declarations, or {\"declarations\": [...]}"
                               if position < len(text) else "JSON file is empty")
    if _skip(text, position) != len(text):
        raise _syntax_error(text, _skip(text, position), "extra data after the end")


def _json_array(text: str, position: int, tracker: _LineTracker) -> Generator[tuple[int, Any], None, int]:
    """Yield the elements of the array starting at text[position] == '['; return the offset after ']'."""
    position = _skip(text, position + 1)
    if text.startswith("]", position):
        return position + 1
    while True:
        line = tracker.line(position)
        value, position = _decode(text, position)
        if isinstance(value, dict):
            yield line, value
        else:
            yield line, RowError(line, f"expected a JSON object, got {_json_type(value)}")
        position = _skip(text, position)
        if text.startswith(",", position):
            position = _skip(text, position + 1)
        elif text.startswith("]", position):
            return position + 1
        else:
            raise _syntax_error(text, position, "expected ',' or ']'")


class _LineTracker:
    """Line numbers of increasing offsets, counting newlines only once."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.offset = 0
        self.line_number = 1

    def line(self, offset: int) -> int:
        if offset < self.offset:  # not expected; recount from the start
            self.offset, self.line_number = 0, 1
        self.line_number += self.text.count("\n", self.offset, offset)
        self.offset = offset
        return self.line_number


def _skip(text: str, position: int) -> int:
    return _WHITESPACE.match(text, position).end()  # type: ignore[union-attr]  # always matches


def _decode(text: str, position: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, position)
    except json.JSONDecodeError as exc:
        raise DeclarationError(f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; "
                               "nothing was imported") from None


def _syntax_error(text: str, position: int, expected: str) -> DeclarationError:
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return DeclarationError(f"not valid JSON at line {line} column {column}: {expected}; nothing was imported")


def _json_type(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "true/false", type(None): "null", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def format_import_report(report: ImportReport) -> str:
    """Text for the CLI: `imported N, skipped M`, then `  line L: message` for each bad row."""
    lines = [f"imported {report.imported}, skipped {report.skipped}"]
    lines.extend(f"  line {error.line}: {error.message}" for error in report.errors)
    return "\n".join(lines)
