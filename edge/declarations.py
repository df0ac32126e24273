"""The cleared-declaration record, and its dict form, shared by the cache, the rules and the sync feed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from devices.protocols.identifiers import (
    device_text_problem,
    normalise_container,
    normalise_gate,
    normalise_plate,
    normalise_seal,
    split_identifier_list,
)
from devices.protocols.iso6346 import CONTAINER_NUMBER, check_digit, is_valid_container


class DeclarationKind(StrEnum):
    IMPORT = "import"
    EXPORT = "export"
    TRANSIT = "transit"


class RiskChannel(StrEnum):
    """VNACCS/VCIS risk channel. Only green may be released automatically."""

    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


class DeclarationStatus(StrEnum):
    CLEARED = "cleared"
    HELD = "held"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Declaration:
    """One customs declaration as the gate knows it. Plates, containers and seals are in matching form."""

    number: str
    kind: DeclarationKind
    gate: str
    plates: tuple[str, ...]
    containers: tuple[str, ...]
    seals: tuple[str, ...]
    gross_weight_kg: float | None
    channel: RiskChannel
    status: DeclarationStatus
    valid_from: datetime
    valid_until: datetime
    version: int = 1


class DeclarationError(ValueError):
    """A declaration (or a file of them) that cannot be taken in; the message names the field and the fix."""


_REQUIRED = ("number", "kind", "gate", "channel", "status", "valid_until")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KINDS = {member.value: member for member in DeclarationKind}
_CHANNELS = {member.value: member for member in RiskChannel}
_STATUSES = {member.value: member for member in DeclarationStatus}


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(row: Mapping[str, Any], field: str) -> str:
    value = row.get(field)
    if type(value) is str and (text := value.strip()):
        return text  # the usual case, first
    if _is_blank(value):
        raise DeclarationError(f"{field}: missing; every declaration needs a {field}")
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise DeclarationError(f"{field}: {value!r} is not text; give the {field} as a string")
    return str(value).strip()


def _choice(row: Mapping[str, Any], field: str, choices: dict[str, Any]) -> Any:
    text = _text(row, field)
    member = choices.get(text.lower())
    if member is None:
        raise DeclarationError(f"{field}: {text!r} is not one of {', '.join(choices)}")
    return member


def _items(row: Mapping[str, Any], field: str) -> list[str]:
    value = row.get(field)
    if _is_blank(value):
        return []
    if isinstance(value, str):
        items = split_identifier_list(value)
    elif isinstance(value, list | tuple):
        items = []
        for item in value:
            if not isinstance(item, str | int) or isinstance(item, bool):
                raise DeclarationError(f"{field}: item {item!r} is not text; give each entry as a string")
            # An entry may itself be a written list (`29C-890.12/29R-034.56` in one YAML item).
            items.extend(split_identifier_list(str(item)))
    else:
        raise DeclarationError(
            f"{field}: {value!r} is neither a list nor a text separated by ';', '|', '/', ',' or new lines")
    for item in items:
        problem = device_text_problem(item)
        if problem is not None:
            raise DeclarationError(f"{field}: an entry holds a {problem}; give the identifier as plain text")
    return items


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value for value in values if value))


def _weight(row: Mapping[str, Any]) -> float | None:
    value = row.get("gross_weight_kg")
    if _is_blank(value):
        return None
    if isinstance(value, bool):
        raise DeclarationError(f"gross_weight_kg: {value!r} is not a number; give kilograms, e.g. 24500")
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise DeclarationError(f"gross_weight_kg: {value!r} is not a number; give kilograms, e.g. 24500") from None
    if not math.isfinite(weight) or weight < 0:
        raise DeclarationError(f"gross_weight_kg: {value!r} is not a weight; give kilograms >= 0 or leave it empty")
    return weight


def _moment(row: Mapping[str, Any], field: str, default: datetime | None) -> datetime:
    value = row.get(field)
    if _is_blank(value):
        if default is None:
            raise DeclarationError(f"{field}: missing; give an ISO 8601 time, e.g. 2024-05-01T08:00:00+07:00")
        return default
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise DeclarationError(
                f"{field}: {value!r} is not an ISO 8601 time; write it like 2024-05-01T08:00:00+07:00"
            ) from None
    else:
        raise DeclarationError(f"{field}: {value!r} is not an ISO 8601 time; write it like 2024-05-01T08:00:00+07:00")
    return as_utc(moment)


def _version(row: Mapping[str, Any]) -> int:
    value = row.get("version")
    if _is_blank(value):
        return 1
    if isinstance(value, bool):
        raise DeclarationError(f"version: {value!r} is not a whole number; give 1, 2, 3 ...")
    if isinstance(value, int):
        version = value
    elif isinstance(value, float) and value.is_integer():
        version = int(value)
    else:
        try:
            version = int(str(value).strip())
        except ValueError:
            raise DeclarationError(f"version: {value!r} is not a whole number; give 1, 2, 3 ...") from None
    if version < 0:
        raise DeclarationError(f"version: {value!r} is negative; give 0 or more (1 when unsure)")
    return version


def as_utc(moment: datetime) -> datetime:
    """Return the time as an aware UTC datetime; a naive time is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    if moment.tzinfo is UTC:
        return moment
    return moment.astimezone(UTC)


def declaration_from_mapping(row: Mapping[str, Any]) -> Declaration:
    """Parse one declaration from a dict (a CSV DictReader row or a JSON object).

    List fields (plates, containers, seals) take a list or a text; a text (or a list entry) is split on
    the separators customs documents use: `;`, `|`, `/`, `,`, `、` and new lines (a `-`, `.` or `·`
    inside a plate or a seal id is kept). The gate code is trimmed and upper-cased (`normalise_gate`).
    Plates, containers and seals are folded to matching form (`devices.protocols.identifiers`: NFKC,
    no separators, upper case) and refused when they hold a control or bidi character; container
    check digits are NOT checked here (the rules report a bad one). Times are ISO 8601, naive
    meaning UTC, and come back as aware UTC.
    Unknown keys are ignored. Raises DeclarationError naming the field and the fix.
    """
    if not isinstance(row, Mapping):
        raise DeclarationError(f"expected an object with declaration fields, got {type(row).__name__}")
    missing = [field for field in _REQUIRED if _is_blank(row.get(field))]
    if missing:
        raise DeclarationError(
            f"{', '.join(missing)}: missing; every declaration needs number, kind, gate, channel, status, valid_until"
        )
    valid_from = _moment(row, "valid_from", _EPOCH)
    valid_until = _moment(row, "valid_until", None)
    if valid_until < valid_from:
        raise DeclarationError(
            f"valid_until: {valid_until.isoformat()} is before valid_from {valid_from.isoformat()}; "
            "swap them or correct the dates"
        )
    return Declaration(
        number=_text(row, "number"),
        kind=_choice(row, "kind", _KINDS),
        gate=normalise_gate(_text(row, "gate")),
        plates=_unique([normalise_plate(item) for item in _items(row, "plates")]),
        containers=_unique([normalise_container(item) for item in _items(row, "containers")]),
        seals=_unique([normalise_seal(item) for item in _items(row, "seals")]),
        gross_weight_kg=_weight(row),
        channel=_choice(row, "channel", _CHANNELS),
        status=_choice(row, "status", _STATUSES),
        valid_from=valid_from,
        valid_until=valid_until,
        version=_version(row),
    )


def publication_problem(declaration: Declaration) -> str | None:
    """Why a declaration should not be published or imported as it stands, or None.

    Refused where declarations enter (`smartgate cache import`, central's publish route), not in the
    feed a node takes from central: a declaration with nothing a gate can match it by, or with a
    container number that is not ISO 6346 (shape or check digit), cannot be matched to a truck.
    """
    if not declaration.plates and not declaration.containers:
        return ("plates, containers: both empty; give the truck's plate or its container numbers, "
                "or the gate can never match this declaration")
    for number in declaration.containers:
        if not is_valid_container(number):
            hint = ""
            if CONTAINER_NUMBER.match(number):
                hint = f" (its check digit should be {check_digit(number[:10])})"
            return (f"containers: {number} is not a valid ISO 6346 container number{hint}; "
                    "correct the number on the declaration")
    return None


def declaration_to_mapping(declaration: Declaration) -> dict[str, Any]:
    """Return a JSON-friendly dict (lists, ISO 8601 UTC strings) that declaration_from_mapping reads back."""
    return {
        "number": declaration.number,
        "kind": declaration.kind.value,
        "gate": declaration.gate,
        "plates": list(declaration.plates),
        "containers": list(declaration.containers),
        "seals": list(declaration.seals),
        "gross_weight_kg": declaration.gross_weight_kg,
        "channel": declaration.channel.value,
        "status": declaration.status.value,
        "valid_from": as_utc(declaration.valid_from).isoformat(),
        "valid_until": as_utc(declaration.valid_until).isoformat(),
        "version": declaration.version,
    }
