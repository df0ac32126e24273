"""The scenario file: its keys (pydantic models), and loading it with every value checked against the site.

Every problem is reported at load, all at once, as `file:line: key: message. Fix: ...` (the line
from the composed YAML tree, as for site files). What only the running gate can tell (a seal id
the lane's reader cannot carry) is reported per truck by the runner (simulators/scenario.py):
that truck is not played, the others are.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.config import (
    CONFIG_ROOT,
    ConfigError,
    ConfigProblem,
    LoadedSite,
    did_you_mean,
    key_path,
    load_site,
    read_yaml,
    site_from_mapping,
    validation_problems,
    yaml_line,
)
from edge.declarations import Declaration, DeclarationError, declaration_from_mapping, publication_problem
from edge.rules import REASONS
from edge.users import USERNAME_RE
from simulators.faults import FaultSpec

SEE = "see README: Scenarios"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SealSpec(_Strict):
    id: str = Field(min_length=1)
    status: Literal["intact", "opened", "tampered"] = "intact"
    container: str | None = None
    battery_pct: int | None = Field(default=87, ge=0, le=100)


class PlateSpec(_Strict):
    """One plate a camera reads: a tractor's and its trailer's, or what the front and rear cameras saw."""

    plate: str = Field(min_length=1)
    camera: str | None = None  # a camera of the lane: device id, its topic's last part (front, rear), or `video`
    confidence: float | None = Field(default=None, ge=0, le=1)  # default: the truck's plate_confidence


class Expectation(_Strict):
    outcome: Literal["release", "hold", "refuse"] | None = None
    reasons: list[str] | None = None
    barrier_opened: bool | None = None
    played: bool | None = None  # false: the runner must report this truck as not played
    officer_refusals: list[str] | None = None  # the kiosk's refusal codes for the officer steps, in order


class ScanSpec(_Strict):
    """What the lane's container scanner reports for the truck."""

    verdict: Literal["clear", "suspect", "pending"] = "clear"
    analysis_s: float = Field(default=0.2, ge=0, le=60)  # scan_started → scan_completed
    image_ref: str | None = None


class OfficerStep(_Strict):
    """An officer acts on the held truck through the kiosk's HTTP API, as a user of `role`."""

    action: Literal["release", "refuse", "inspect"]
    officer_id: str = Field(default="officer-scenario", pattern=USERNAME_RE.pattern)
    role: Literal["display", "officer", "supervisor", "admin"] = "officer"
    reason: str = Field(default="scenario", min_length=3, max_length=500)
    after_s: float = Field(default=0.2, ge=0, le=600)  # after the truck's (first) decision


class FeedChange(_Strict):
    """A change central publishes in the declaration feed: a revocation or an amendment."""

    revoke: str | None = Field(default=None, min_length=1)  # the declaration's number
    amend: dict[str, Any] | None = None  # `number` and the fields that change; the version goes up by one
    reason: str = "scenario"

    @model_validator(mode="after")
    def _one_change(self) -> FeedChange:
        if (self.revoke is None) == (self.amend is None):
            raise ValueError("give exactly one of revoke (a declaration number) or amend (number and new fields)")
        if self.amend is not None and not isinstance(self.amend.get("number"), str | int):
            raise ValueError("amend needs the number of the declaration it amends")
        return self

    @property
    def number(self) -> str:
        return str(self.revoke if self.revoke is not None else self.amend["number"])  # type: ignore[index]


class FeedEvent(FeedChange):
    at_s: float = Field(ge=0)  # seconds after the scenario starts


class WaitingEvent(FeedChange):
    after_s: float = Field(default=0.2, ge=0, le=600)  # after the truck's (first) decision, while it waits


class TruckSpec(_Strict):
    lane: str
    plate: str | None = Field(default=None, min_length=1)
    plates: list[PlateSpec] | None = Field(default=None, min_length=1)
    plate_confidence: float = Field(default=0.95, ge=0, le=1)
    containers: list[str] = []
    seals: list[SealSpec] = []
    weight_kg: float | None = Field(default=None, ge=0, le=999_999)
    scan: ScanSpec = ScanSpec()
    arrive_after_s: float = Field(default=0.0, ge=0)
    follow_closely: bool = False  # onto the arrival loop while the truck before it is still under the boom
    officer: list[OfficerStep] = []
    while_waiting: list[WaitingEvent] = []
    expect: Expectation | None = None
    name: str | None = None

    @field_validator("officer", mode="before")
    @classmethod
    def _one_or_more_steps(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else ([] if value is None else value)

    @model_validator(mode="after")
    def _one_plate_key(self) -> TruckSpec:
        if (self.plate is None) == (self.plates is None):
            raise ValueError("give either plate (one plate, the lane's first camera) or plates (a list), not both")
        return self

    def plate_reads(self) -> list[PlateSpec]:
        """Every plate read the truck shows, with its confidence filled in (camera None: the lane's first)."""
        if self.plates is None:
            return [PlateSpec(plate=str(self.plate), confidence=self.plate_confidence)]
        return [p if p.confidence is not None else p.model_copy(update={"confidence": self.plate_confidence})
                for p in self.plates]

    @property
    def label(self) -> str:
        """The plate the result names the truck by: the first one."""
        return self.plate_reads()[0].plate


class Timing(_Strict):
    boom_travel_s: float = Field(default=0.3, ge=0, le=30)
    drive_s: float = Field(default=0.3, ge=0, le=60)
    hold_wait_s: float = Field(default=0.3, ge=0, le=600)
    plate_lead_s: float = Field(default=0.1, ge=0, le=10)
    truck_timeout_s: float = Field(default=60, gt=0)
    collect_timeout_s: float | None = Field(default=None, gt=0, le=600)  # overrides every lane's policy
    feed_timeout_s: float = Field(default=10, gt=0, le=120)  # a feed change must reach the node's cache within


class ScenarioFile(_Strict):
    site: str
    name: str = ""
    description: str = ""
    timing: Timing = Timing()
    declarations: list[dict[str, Any]] | str = []
    trucks: list[TruckSpec] = Field(min_length=1)
    faults: list[FaultSpec] = []
    feed: list[FeedEvent] = []

    @field_validator("declarations", mode="before")
    @classmethod
    def _list_or_file(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(row, dict) for row in value)):
            return value
        raise ValueError("give a list of declarations (mappings of their fields) or the name of a YAML/JSON file "
                         "holding them")


_RELATIVE = re.compile(r"^now\s*(?:([+-])\s*(\d+(?:\.\d+)?)\s*([smhd]))?$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_TIME_FIELDS = ("valid_from", "valid_until")


def resolve_time(value: Any, now: datetime) -> Any:
    """`now`, `now+2d`, `now-1h` become ISO timestamps; anything else is left as it is."""
    if isinstance(value, str):
        match = _RELATIVE.match(value.strip())
        if match:
            sign, amount, unit = match.groups()
            delta = timedelta(**{_UNITS[unit]: float(amount)}) if amount else timedelta()
            return (now + delta if sign != "-" else now - delta).isoformat()
    return value


def _resolved_row(row: Any, now: datetime) -> dict[str, Any]:
    """A declaration row with relative times resolved; DeclarationError for a bare date (no time of day)."""
    if not isinstance(row, dict):
        raise DeclarationError(f"expected a mapping of declaration fields, got {type(row).__name__}")
    for field in _TIME_FIELDS:
        value = row.get(field)
        if isinstance(value, date) and not isinstance(value, datetime):
            raise DeclarationError(
                f"{field}: {value.isoformat()} is a date without a time of day (YAML reads an unquoted date as "
                f"a date); write a time with its offset in quotes, e.g. \"{value.isoformat()}T00:00:00+07:00\", "
                "or a relative time such as now-1d")
    return {key: resolve_time(value, now) for key, value in row.items()}


def _declaration_field(exc: DeclarationError) -> str | None:
    head = str(exc).split(":", 1)[0]
    return head if re.fullmatch(r"[a-z_]+", head) else None


class Scenario:
    """A validated scenario: its spec, its site (with collect_timeout_s applied), its declarations."""

    def __init__(self, path: Path, spec: ScenarioFile, declarations: list[Declaration],
                 rows: dict[str, dict[str, Any]] | None = None, tree: yaml.Node | None = None,
                 now: datetime | None = None, problems: list[ConfigProblem] | None = None):
        self.path, self.spec, self.declarations = path, spec, declarations
        self.now = now or datetime.now(UTC)  # what `now` meant in the declarations' times
        self.rows = rows or {}  # number → the declaration as the scenario wrote it (times resolved), for amends
        self.tree = tree
        self.site = load_site(self._resolve(spec.site, CONFIG_ROOT / "sites", ".yaml"))
        if spec.timing.collect_timeout_s is not None:
            data = self.site.site.model_dump()
            for lane in data["lanes"]:
                lane["policy"]["collect_timeout_s"] = spec.timing.collect_timeout_s
            self.site = site_from_mapping(data, origin=str(self.site.path))
        problems = [*(problems or []), *_cross_check(self)]  # the declarations' problems come first
        if problems:
            raise ConfigError(problems)

    def _resolve(self, name: str, default_dir: Path, suffix: str) -> Path:
        candidate = (self.path.parent / name).resolve()
        if candidate.exists():
            return candidate
        return default_dir / (name if name.endswith(suffix) else name + suffix)

    @property
    def has_feed(self) -> bool:
        """True when declarations change while the scenario plays (central then runs beside the gate)."""
        return bool(self.spec.feed) or any(t.while_waiting for t in self.spec.trucks)

    @property
    def has_officers(self) -> bool:
        """True when an officer acts (the kiosk then serves, and the officers act through it)."""
        return any(t.officer for t in self.spec.trucks)

    def problem(self, loc: tuple[Any, ...], message: str, fix: str) -> ConfigProblem:
        """A problem at a key of the scenario file, with its line."""
        return ConfigProblem(str(self.path), key_path(loc), message, fix, yaml_line(self.tree, loc))


def lane_cameras(site: LoadedSite, lane_id: str) -> dict[str, str]:
    """Names a scenario may give a lane's cameras → device id: the id, the ANPR topic's last part, `video`."""
    names: dict[str, str] = {}
    for device in site.site.lane(lane_id).devices:
        if device.kind == "anpr":
            names.setdefault(device.transport.topic.rsplit("/", 1)[-1], device.id)
            names[device.id] = device.id
        elif device.kind == "camera":
            names.setdefault("video", device.id)
            names[device.id] = device.id
    return names


def _choices(fix_for: str, given: str, choices: list[str]) -> str:
    guess = did_you_mean(given, choices)
    if guess and len(choices) > 12:
        return f"did you mean '{guess}'?{fix_for}"
    return (f"did you mean '{guess}'? " if guess else "") + f"use one of {', '.join(choices) or '(none)'}{fix_for}"


def _cross_check(scenario: Scenario) -> list[ConfigProblem]:
    """Lanes, devices, cameras, reason codes, feed numbers and officers checked against the site and the file."""
    spec, site, problem = scenario.spec, scenario.site, scenario.problem
    lanes = sorted(lane.id for lane in site.site.lanes)
    devices = sorted({d.id for lane in site.site.lanes for d in lane.devices} | {"broker"})
    problems: list[ConfigProblem] = []
    roles: dict[str, str] = {}
    for i, truck in enumerate(spec.trucks):
        if truck.lane not in lanes:
            problems.append(problem(("trucks", i, "lane"), f"no lane '{truck.lane}' in the site",
                                    _choices("", truck.lane, lanes)))
            continue
        cameras = lane_cameras(site, truck.lane)
        for j, read in enumerate(truck.plates or []):
            if read.camera is not None and read.camera not in cameras:
                problems.append(problem(("trucks", i, "plates", j, "camera"),
                                        f"no camera '{read.camera}' at lane {truck.lane}",
                                        _choices(" (or add the camera to the site)", read.camera, sorted(cameras))))
        for j, code in enumerate((truck.expect.reasons or []) if truck.expect else []):
            if code not in REASONS:
                problems.append(problem(("trucks", i, "expect", "reasons", j), f"unknown reason code '{code}'",
                                        _choices(" (README: Reason codes)", code, sorted(REASONS))))
        for j, step in enumerate(truck.officer):
            known = roles.setdefault(step.officer_id, step.role)
            if known != step.role:
                problems.append(problem(("trucks", i, "officer", j, "role"),
                                        f"officer {step.officer_id} is a {known} elsewhere in this scenario",
                                        "give each officer_id one role (use another officer_id for the other role)"))
        for j, event in enumerate(truck.while_waiting):
            problems.extend(_feed_problems(scenario, ("trucks", i, "while_waiting", j), event))
        if truck.follow_closely and not any(t.lane == truck.lane for t in spec.trucks[:i]):
            problems.append(problem(("trucks", i, "follow_closely"), f"no truck before this one at lane {truck.lane}",
                                    "follow_closely follows the previous truck of the same lane: remove it here"))
    for i, fault in enumerate(spec.faults):
        if fault.device not in devices:
            problems.append(problem(("faults", i, "device"), f"no device '{fault.device}' in the site",
                                    _choices("", fault.device, devices)))
    for i, event in enumerate(spec.feed):
        problems.extend(_feed_problems(scenario, ("feed", i), event))
    return problems


def _feed_problems(scenario: Scenario, loc: tuple[Any, ...], event: FeedChange) -> list[ConfigProblem]:
    """A feed change names a declaration of the scenario; an amendment must still be one central publishes."""
    numbers = sorted(scenario.rows)
    key = "revoke" if event.revoke is not None else "amend"
    if event.number not in scenario.rows:
        fix = (_choices(" (declarations: of this scenario)", event.number, numbers) if numbers
               else "declare it under declarations: first, or correct the number")
        return [scenario.problem(loc + (key,), f"no declaration {event.number} in this scenario", fix)]
    if event.amend is None:
        return []
    if "version" in event.amend or "gate" in event.amend:
        return [scenario.problem(loc + ("amend",), "an amendment keeps the gate and takes the next version",
                                 "remove version and gate from amend")]
    try:
        amended = declaration_from_mapping({**scenario.rows[event.number], **_resolved_row(event.amend, scenario.now)})
        reason = publication_problem(amended)
        if reason is not None:
            raise DeclarationError(reason)
    except DeclarationError as exc:
        field = _declaration_field(exc)
        return [scenario.problem(loc + ("amend",) + ((field,) if field else ()), str(exc).split("; ", 1)[0],
                                 str(exc).split("; ", 1)[-1] if "; " in str(exc) else "correct the amended fields")]
    return []


def load_scenario(path: str | Path, now: datetime | None = None) -> Scenario:
    """Read and validate a scenario file; ConfigError lists every problem as file:line: key: message. Fix: ..."""
    path = Path(path)
    now = now or datetime.now(UTC)
    data, tree = read_yaml(path)
    try:
        spec = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(path, exc, tree, root=ScenarioFile, data=data)) from exc
    rows, origin, rows_tree, prefix = spec.declarations, path, tree, ("declarations",)
    if isinstance(rows, str):
        origin = (path.parent / rows).resolve()
        loaded, rows_tree = read_yaml(origin)  # its problems name that file and its lines
        if isinstance(loaded, dict):
            rows, prefix = loaded.get("declarations", []), ("declarations",)
        else:
            rows, prefix = loaded, ()
    declarations, problems, by_number = [], [], {}
    for index, row in enumerate(rows or []):
        try:
            resolved = _resolved_row(row, now)
            declarations.append(declaration_from_mapping(resolved))
            by_number[declarations[-1].number] = resolved
        except DeclarationError as exc:
            field = _declaration_field(exc)
            loc = prefix + (index,) + ((field,) if field else ())
            message, _, fix = str(exc).partition("; ")
            problems.append(ConfigProblem(str(origin), key_path(("declarations",) + loc[len(prefix):]), message,
                                          fix or "correct the declaration (see README: Declarations)",
                                          yaml_line(rows_tree, loc)))
    return Scenario(path, spec, declarations, by_number, tree, now, problems)
