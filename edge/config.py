"""Site and device-profile configuration: pydantic models, loading, and problems that name the fix.

A site file (`firmware_configs/sites/*.yaml`) lists the gate's lanes, each lane's policy and its
devices; each device names a profile (`firmware_configs/devices/*.yaml`) that describes the
vendor/model specifics (register maps, frame formats, JSON field names). Everything is validated at
start-up; every problem is reported with the file, the key path, the line and a fix.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devices.profiles import (  # noqa: F401 - the profile and transport schemas live in devices/; re-exported
    AnprFieldNames,
    AnprProfile,
    AnyProfile,
    BarrierCoils,
    BarrierInputs,
    BarrierModbusMap,
    BarrierProfile,
    BarrierRegisters,
    DeviceProfile,
    EsealProfile,
    ModbusRtuTransport,
    ModbusTcpTransport,
    MqttTransport,
    ScannerProfile,
    SerialSettings,
    SerialTransport,
    Transport,
    VideoCameraProfile,
    VideoTransport,
    WeighbridgeProfile,
)
from edge.token_format import TokenError, read_token_file, token_problem

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "firmware_configs"
PROFILE_DIR = CONFIG_ROOT / "devices"

ReadingKind = Literal["plate", "seal", "container", "weight", "scan"]
DeviceKind = Literal["barrier", "eseal", "anpr", "weighbridge", "scanner", "camera"]

# Which device kinds can provide each required reading.
READING_SOURCES: dict[str, tuple[str, ...]] = {
    "plate": ("anpr", "camera"),
    "seal": ("eseal",),
    "container": ("eseal", "scanner"),
    "weight": ("weighbridge",),
    "scan": ("scanner",),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- site


TRANSPORTS_BY_KIND: dict[str, tuple[str, ...]] = {
    "barrier": ("modbus_tcp", "modbus_rtu"),
    "eseal": ("serial",),
    "anpr": ("mqtt",),
    "weighbridge": ("serial",),
    "scanner": ("mqtt",),
    "camera": ("video",),
}


# The node's own journal shows at the lanes as a device of this id when it cannot write (edge/journal_guard.py).
JOURNAL_DEVICE = "journal"


class DeviceConfig(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: DeviceKind
    profile: str
    transport: Transport

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() == JOURNAL_DEVICE:
            raise ValueError(f"'{value}' is the node's own journal at the lanes: give the device another id")
        return value


class LanePolicy(_Strict):
    """What a lane needs before it may decide, and how strict it is."""

    required_readings: list[ReadingKind] = ["plate", "seal"]
    weight_tolerance_pct: float = Field(default=3.0, ge=0, le=100)
    collect_timeout_s: float = Field(default=20.0, gt=0, le=600)
    pre_arrival_window_s: float = Field(default=5.0, ge=0, le=120)
    max_cache_age_s: float = Field(default=6 * 3600, gt=0)
    min_plate_confidence: float = Field(default=0.7, ge=0, le=1)
    # A reading that arrives for a truck the rules hold, while it still waits at the barrier, runs the rules
    # again for this long after the hold (a late X-ray verdict releases it); 0: late readings are only recorded.
    redecide_window_s: float = Field(default=600.0, ge=0, le=86400)
    # A released truck that left the arrival loop without going under the boom (it backed away): the boom closes
    # this long after, once the lane is clear (never onto a vehicle), and the transaction ends before passage.
    departed_close_s: float = Field(default=30.0, gt=0, le=600)


class LaneConfig(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-]+$")
    name: str = ""
    name_vi: str = ""  # the name in Vietnamese, for the kiosk in Vietnamese (falls back to `name`)
    direction: Literal["import", "export"]
    policy: LanePolicy = LanePolicy()
    devices: list[DeviceConfig] = Field(min_length=1)

    def device(self, kind: str) -> DeviceConfig | None:
        """Return the lane's first device of a kind, or None."""
        return next((d for d in self.devices if d.kind == kind), None)


class MqttTlsFiles(_Strict):
    """The node's TLS files for the broker (what `smartgate pki init` writes); relative paths are relative to
    the site file. `dir` (default `<data_dir>/pki`) holds `ca.crt` and `clients/<identity>.crt|.key`; a
    file named here replaces the one found there."""

    dir: str | None = Field(default=None, min_length=1)
    ca: str | None = Field(default=None, min_length=1)  # the gate CA (it signed the broker's certificate)
    cert: str | None = Field(default=None, min_length=1)  # the device bus's identity (CN = client_id)
    key: str | None = Field(default=None, min_length=1)
    uplink_cert: str | None = Field(default=None, min_length=1)  # the uplink's identity (CN = node_client_id)
    uplink_key: str | None = Field(default=None, min_length=1)
    sparkplug_cert: str | None = Field(default=None, min_length=1)  # Sparkplug B's (CN = sparkplug_client_id)
    sparkplug_key: str | None = Field(default=None, min_length=1)


@dataclass(frozen=True)
class MqttTlsPaths:
    """The resolved files of one TLS client identity, each with the site key it came from."""

    identity: str
    ca: Path
    cert: Path
    key: Path
    keys: tuple[str, str, str]  # the site keys of ca, cert and key (for error messages)


class MqttBroker(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8883, ge=1, le=65535)
    client_id: str = Field(default="smartgate-edge", min_length=1, max_length=128,
                           pattern=r"^[A-Za-z0-9_.\-]+$")  # the device bus (clean session); its TLS identity
    # The node's own persistent session (telemetry, birth/death, feed notifications); default
    # smartgate-<gate>-node. Set it only when several nodes serve one gate (one per lane group).
    node_client_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    # Sparkplug B telemetry (sync/sparkplug.py) on a connection of its own (its will is the NDEATH);
    # default smartgate-<gate>-sparkplug. `sparkplug: false` publishes only the JSON telemetry.
    sparkplug: bool = True
    sparkplug_client_id: str | None = Field(default=None, min_length=1, max_length=128,
                                            pattern=r"^[A-Za-z0-9_.\-]+$")
    sparkplug_group: str = Field(default="smartgate", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    username: str | None = None
    password: str | None = None
    # TLS with a client certificate per identity (the default, files from `smartgate pki init`).
    tls: MqttTlsFiles = MqttTlsFiles()
    # Plaintext and no certificate: only when the site says so; the kiosk then shows the lanes run insecure.
    insecure: bool = False

    def session_client_id(self, gate: str) -> str:
        """The stable client id of the node's persistent session."""
        return self.node_client_id or f"smartgate-{gate}-node"

    def sparkplug_id(self, gate: str) -> str:
        """The client id (and TLS identity) of the node's Sparkplug B connection."""
        return self.sparkplug_client_id or f"smartgate-{gate}-sparkplug"

    def tls_paths(self, gate: str, site_dir: Path, data_dir: Path) -> tuple[MqttTlsPaths, ...] | None:
        """(device bus, uplink[, Sparkplug]) TLS files, resolved; None when the site says `insecure: true`."""
        if self.insecure:
            return None
        tls = self.tls

        def resolve(value: str | None, default: Path) -> Path:
            if value is None:
                return default
            path = Path(value)
            return path if path.is_absolute() else site_dir / path

        base = resolve(tls.dir, data_dir / "pki")
        uplink = self.session_client_id(gate)
        ca = resolve(tls.ca, base / "ca.crt")
        bus = MqttTlsPaths(self.client_id, ca, resolve(tls.cert, base / "clients" / f"{self.client_id}.crt"),
                           resolve(tls.key, base / "clients" / f"{self.client_id}.key"),
                           ("mqtt.tls.ca", "mqtt.tls.cert", "mqtt.tls.key"))
        up = MqttTlsPaths(uplink, ca, resolve(tls.uplink_cert, base / "clients" / f"{uplink}.crt"),
                          resolve(tls.uplink_key, base / "clients" / f"{uplink}.key"),
                          ("mqtt.tls.ca", "mqtt.tls.uplink_cert", "mqtt.tls.uplink_key"))
        if not self.sparkplug:
            return bus, up
        spb = self.sparkplug_id(gate)
        sparkplug = MqttTlsPaths(spb, ca, resolve(tls.sparkplug_cert, base / "clients" / f"{spb}.crt"),
                                 resolve(tls.sparkplug_key, base / "clients" / f"{spb}.key"),
                                 ("mqtt.tls.ca", "mqtt.tls.sparkplug_cert", "mqtt.tls.sparkplug_key"))
        return bus, up, sparkplug


def mqtt_tls_problems(loaded: LoadedSite, data_dir: Path) -> list[ConfigProblem]:
    """Start-up check of the broker's security: every TLS file there and readable, or `insecure: true`."""
    mqtt = loaded.site.mqtt
    paths = mqtt.tls_paths(loaded.site.gate, loaded.path.parent, data_dir)
    if paths is None:
        return []
    problems: list[ConfigProblem] = []
    fix = (f"make the gate's certificates with `smartgate pki init --site {loaded.path}` (or name the files in "
           "mqtt.tls); a plaintext, anonymous broker needs `insecure: true` under mqtt: in the site file")
    seen: set[Path] = set()
    for identity in paths:
        for key, path in zip(identity.keys, (identity.ca, identity.cert, identity.key), strict=True):
            if path in seen:
                continue
            seen.add(path)
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                what = "the gate CA" if key.endswith(".ca") else f"the TLS identity {identity.identity}"
                problems.append(ConfigProblem(str(loaded.path), key, f"cannot read {path}, {what} ({exc.strerror})",
                                              fix))
    return problems


class KioskConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class CentralConfig(_Strict):
    """The link to the central system (sync/). Absent from a site file: the node does not sync."""

    url: str = Field(min_length=1, pattern=r"^https?://")
    public_key: str = Field(min_length=1)  # central's Ed25519 key: a PEM/base64 file path, or base64 inline
    # During a rotation of central's signing key: the new key, accepted as well as public_key.
    next_public_key: str | None = Field(default=None, min_length=1)
    # The CA certificate (PEM) that signed central's TLS server certificate (relative to the site
    # file); absent: the system's trusted CAs.
    ca_file: str | None = Field(default=None, min_length=1)
    # Plain http:// to central is refused unless this is set (a loopback test of the plumbing only).
    insecure_http: bool = False
    # This gate's credential at central, sent as `Authorization: Bearer`: inline, or a file that holds
    # it (relative paths are relative to the site file). Exactly one of the two.
    token: str | None = None
    token_file: str | None = Field(default=None, min_length=1)
    upload_batch: int = Field(default=500, ge=1, le=10000)
    backoff_initial_s: float = Field(default=0.5, gt=0, le=60)
    backoff_max_s: float = Field(default=30.0, gt=0, le=3600)
    request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    down_after_s: float = Field(default=30.0, gt=0, le=3600)
    slow_s: float = Field(default=5.0, gt=0, le=300)
    outbox_max_rows: int = Field(default=2_000_000, ge=10)
    outbox_max_bytes: int = Field(default=1 << 30, ge=1024)
    feed_poll_s: float = Field(default=30.0, gt=0, le=86400)
    feed_batch: int = Field(default=5000, ge=1, le=100000)

    @field_validator("token")
    @classmethod
    def _token_form(cls, value: str | None) -> str | None:
        problem = None if value is None else token_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def token_path(self, base: Path) -> Path | None:
        """The token file resolved against the site file's folder (None when the token is inline)."""
        if self.token_file is None:
            return None
        path = Path(self.token_file)
        return path if path.is_absolute() else base / path

    def ca_path(self, base: Path) -> Path | None:
        """The CA file resolved against the site file's folder (None: the system's CAs)."""
        if self.ca_file is None:
            return None
        path = Path(self.ca_file)
        return path if path.is_absolute() else base / path

    @model_validator(mode="after")
    def _backoff_order(self) -> CentralConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        if self.url.startswith("http://") and not self.insecure_http:
            raise ValueError("central.url is plain http: use https:// with ca_file (the CA of central's "
                             "certificate), or set insecure_http: true for a loopback test only")
        return self


class JournalGuardConfig(_Strict):
    """What the node does when its journal cannot write (edge/journal_guard.py; README "When the disk is full")."""

    reserve_mib: float = Field(default=8.0, ge=0, le=4096)  # the space reserve freed to record the fault; 0: none
    buffer_rows: int = Field(default=10_000, ge=10, le=1_000_000)  # rows held in memory; more are dropped, counted
    write_timeout_s: float = Field(default=2.0, gt=0, le=60)  # a write slower than this degrades the lanes
    retry_s: float = Field(default=1.0, gt=0, le=60)  # how often the node tries to write the held rows back
    lane_stall_s: float = Field(default=10.0, gt=0, le=600)  # a lane stuck this long stops its PLC heartbeat


class SiteConfig(_Strict):
    gate: str = Field(min_length=1, pattern=r"^[A-Z0-9_\-]+$")
    name: str = ""
    name_vi: str = ""  # the name in Vietnamese, for the kiosk in Vietnamese (falls back to `name`)
    data_dir: str = "var/site"
    mqtt: MqttBroker = MqttBroker()
    kiosk: KioskConfig = KioskConfig()
    central: CentralConfig | None = None
    journal: JournalGuardConfig = JournalGuardConfig()
    lanes: list[LaneConfig] = Field(min_length=1)

    def lane(self, lane_id: str) -> LaneConfig:
        """Return the lane with this id (KeyError when there is none)."""
        for lane in self.lanes:
            if lane.id == lane_id:
                return lane
        raise KeyError(lane_id)


# ---------------------------------------------------------------- problems


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file, with the fix."""

    file: str
    key: str
    message: str
    fix: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '(top level)'}: {self.message}. Fix: {self.fix}"


class ConfigError(Exception):
    """Raised when a config cannot be used; carries every problem found."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class LoadedSite:
    """A validated site with the profile of every device resolved."""

    path: Path
    site: SiteConfig
    profiles: dict[str, AnyProfile]
    profile_files: dict[str, Path] = field(default_factory=dict)  # profile id → the file it was read from

    def profile_for(self, device: DeviceConfig) -> Any:
        """Return the resolved profile of a device."""
        return self.profiles[device.profile]


def _key_path(loc: Iterable[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _fix_for(error: dict[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return f"add the key '{error['loc'][-1]}'"
    if kind == "extra_forbidden":
        return "remove this key or correct its spelling"
    if kind == "literal_error":
        return f"use one of {ctx.get('expected', 'the allowed values')}"
    if kind == "union_tag_invalid":
        return f"set it to one of {ctx.get('expected_tags', 'the known types')}"
    if kind == "union_tag_not_found":
        return f"add the key '{ctx.get('discriminator', 'type')}'"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "write a whole number"
    if kind in ("float_parsing", "float_type"):
        return "write a number"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bounds = ", ".join(f"{k} {v}" for k, v in ctx.items())
        return f"choose a value within the allowed range ({bounds})"
    if kind == "string_pattern_mismatch":
        return f"use only characters matching {ctx.get('pattern')}"
    if kind in ("list_type", "too_short"):
        return "give a list with at least one entry"
    if kind in ("model_type", "dict_type"):
        return "write a mapping (key: value lines) here"
    if kind == "value_error":
        return "correct the value as the message says"
    return "correct the value"


def _yaml_line(root: yaml.Node | None, loc: Iterable[Any]) -> int | None:
    """Find the 1-based line of a key path in a composed YAML tree."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), "", f"cannot read file ({exc.strerror})",
                           "check the path and the file's permissions")]
        ) from exc
    try:
        return yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            [ConfigProblem(str(path), "", f"not valid YAML: {getattr(exc, 'problem', exc)}",
                           "fix the YAML syntax (indentation, colons, quotes)",
                           mark.line + 1 if mark else None)]
        ) from exc


_UNION_TAGS = {"modbus_tcp", "modbus_rtu", "serial", "mqtt", "video", "barrier", "eseal", "anpr", "weighbridge",
               "scanner", "camera"}


def _without_union_tags(loc: tuple[Any, ...], first_is_tag: bool = True) -> tuple[Any, ...]:
    """Drop the tag pydantic inserts after a discriminated union's key ('transport.serial.port'), and at the
    start of a profile's errors (its `kind`); a site's own top-level keys (`mqtt`) are kept."""
    cleaned: list[Any] = []
    for index, part in enumerate(loc):
        previous = loc[index - 1] if index else None
        if part in _UNION_TAGS and (previous == "transport" or (index == 0 and first_is_tag)):
            continue
        cleaned.append(part)
    return tuple(cleaned)


def _unwrap(annotation: Any, data: Any) -> Any:
    """The model an annotation stands for at this place of the file (Optional, Annotated, tagged unions)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0], data)
    if origin in (Union, types.UnionType):
        models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
        for model in models:  # a tagged union: the member whose Literal tag the file's mapping carries
            for name, info in model.model_fields.items():
                if get_origin(info.annotation) is Literal and isinstance(data, dict) \
                        and data.get(name) in get_args(info.annotation):
                    return model
        return None
    return annotation


def _allowed_keys(root: Any, loc: tuple[Any, ...], data: Any) -> list[str]:
    """The keys a mapping at `loc` may have (the model's fields), or [] when that is not known."""
    annotation = root
    for part in loc:
        annotation = _unwrap(annotation, data)
        if isinstance(part, int):
            args = get_args(annotation)
            annotation = args[0] if args else None
            data = data[part] if isinstance(data, list) and part < len(data) else None
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and part in annotation.model_fields:
            annotation = annotation.model_fields[part].annotation
            data = data.get(part) if isinstance(data, dict) else None
        else:
            return []
    model = _unwrap(annotation, data)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to a misspelt word (difflib), or None when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def _unknown_key_fix(key: str, allowed: list[str]) -> str:
    guess = did_you_mean(key, allowed)
    if guess:
        return f"did you mean '{guess}'? Otherwise remove this key"
    if allowed:
        return f"remove this key or correct its spelling; the keys here are {', '.join(allowed)}"
    return "remove this key or correct its spelling"


def _validation_problems(
    path: Path, exc: ValidationError, tree: yaml.Node | None, prefix: tuple[Any, ...] = (),
    root: Any = None, data: Any = None,
) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors():
        # Discriminated unions add the tag to the location; drop it so the key path is the file's.
        loc = _without_union_tags(error["loc"], first_is_tag=root is None or get_origin(root) is Annotated)
        full = prefix + loc
        message = error["msg"].removeprefix("Value error, ")
        fix = None
        if error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] == "extra_forbidden":
            message = "unknown key"
            if root is not None and loc:
                fix = _unknown_key_fix(str(loc[-1]), _allowed_keys(root, loc[:-1], data))
        elif error["type"] in ("literal_error", "union_tag_invalid"):
            ctx = error.get("ctx") or {}
            given = ctx.get("tag") if error["type"] == "union_tag_invalid" else error.get("input")
            choices = re.findall(r"'([^']*)'", str(ctx.get("expected") or ctx.get("expected_tags") or ""))
            guess = did_you_mean(given, choices) if isinstance(given, str) else None
            if guess:
                fix = f"did you mean '{guess}'? ({_fix_for(error)})"
        fix = fix or _KEY_FIXES.get(tuple(full[-2:])) or _fix_for(error)
        problems.append(ConfigProblem(str(path), _key_path(full), message, fix, _yaml_line(tree, full)))
    return problems


_TOKEN_FIX = ("paste the gate's token exactly as `smartgate central token --gate <GATE>` printed it, or put it "
              "in a file and name that file in central.token_file")
_KEY_FIXES: dict[tuple[str, ...], str] = {
    ("central", "token"): _TOKEN_FIX,
    ("policy", "redecide_window_s"): ("give the seconds after a hold during which a late reading (an X-ray verdict, a "
                                      "seal) re-decides the truck still at the barrier: 0 to 86400, 0 turns it off"),
}


# The same checks for other YAML files of ours (scenarios: simulators/scenario.py), under public names.


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """(data, composed tree) of a YAML file; ConfigError naming the line for unreadable or invalid YAML."""
    return _read_yaml(path)


def yaml_line(tree: yaml.Node | None, loc: Iterable[Any]) -> int | None:
    """The 1-based line of a key path (`("trucks", 2, "lane")`) in a composed YAML tree, or the nearest above it."""
    return _yaml_line(tree, loc)


def key_path(loc: Iterable[Any]) -> str:
    """A key path as the file reads it: `trucks[2].lane`."""
    return _key_path(loc)


def validation_problems(path: Path, exc: ValidationError, tree: yaml.Node | None, root: Any,
                        data: Any) -> list[ConfigProblem]:
    """One ConfigProblem per pydantic error, with the file's line, the key path and a fix."""
    return _validation_problems(path, exc, tree, root=root, data=data)


def profile_dirs(site_path: Path | None = None) -> list[Path]:
    """Where a site's device profiles are looked for, in order: a `devices/` folder beside the site file,
    then the shipped profiles (`firmware_configs/devices`)."""
    dirs: list[Path] = []
    if site_path is not None and Path(site_path).is_file():  # not for a site built in memory ('<scenario>')
        local = Path(site_path).parent / "devices"
        if local.is_dir():
            dirs.append(local)
    if PROFILE_DIR.resolve() not in [d.resolve() for d in dirs]:
        dirs.append(PROFILE_DIR)
    return dirs


def find_profile(profile_id: str, dirs: Iterable[Path]) -> Path | None:
    """The first `<id>.yaml` in dirs, or None."""
    if not profile_id or "/" in profile_id or profile_id.startswith("."):
        return None
    for directory in dirs:
        candidate = Path(directory) / f"{profile_id}.yaml"
        if candidate.is_file():
            return candidate
    return None


def load_profile(profile_id: str, profile_dir: Path | Iterable[Path] = PROFILE_DIR) -> AnyProfile:
    """Load and validate one device profile by id (the file `<id>.yaml` in profile_dir, or the first of
    several folders that has it)."""
    dirs = [profile_dir] if isinstance(profile_dir, Path | str) else list(profile_dir)
    path = find_profile(profile_id, dirs) or Path(dirs[0]) / f"{profile_id}.yaml"
    data, tree = _read_yaml(path)
    from pydantic import TypeAdapter

    try:
        profile = TypeAdapter(DeviceProfile).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(_validation_problems(path, exc, tree, root=DeviceProfile, data=data)) from exc
    if profile.id != profile_id:
        raise ConfigError([ConfigProblem(str(path), "id", f"id '{profile.id}' differs from the file name",
                                         f"set id: {profile_id} or rename the file", _yaml_line(tree, ("id",)))])
    return profile


def _available_profiles(dirs: Iterable[Path]) -> list[str]:
    return sorted({p.stem for d in dirs for p in Path(d).glob("*.yaml")})


def _unknown_profile(profile: str, dirs: list[Path]) -> tuple[str, str]:
    """(message, fix) for a profile no folder has, with the closest known name."""
    available = _available_profiles(dirs)
    where = " or ".join(str(d) for d in dirs)
    guess = did_you_mean(profile, available)
    fix = f"did you mean '{guess}'? " if guess else ""
    fix += f"Use one of {', '.join(available)} or add {profile}.yaml to {dirs[0]}"
    return f"no device profile '{profile}' in {where}", fix


def _raw_profile_problems(path: Path, data: Any, tree: yaml.Node | None, dirs: list[Path]) -> list[ConfigProblem]:
    """Profile problems found in a site that failed validation, so that one run reports them too."""
    problems: list[ConfigProblem] = []
    checked: set[str] = set()
    lanes = data.get("lanes") if isinstance(data, dict) else None
    for li, lane in enumerate(lanes if isinstance(lanes, list) else []):
        devices = lane.get("devices") if isinstance(lane, dict) else None
        for di, device in enumerate(devices if isinstance(devices, list) else []):
            profile = device.get("profile") if isinstance(device, dict) else None
            if not isinstance(profile, str):
                continue
            loc = ("lanes", li, "devices", di, "profile")
            if find_profile(profile, dirs) is None:
                message, fix = _unknown_profile(profile, dirs)
                problems.append(ConfigProblem(str(path), _key_path(loc), message, fix, _yaml_line(tree, loc)))
            elif profile not in checked:
                checked.add(profile)
                try:
                    load_profile(profile, dirs)
                except ConfigError as exc:
                    problems.extend(exc.problems)
    return problems


def _cross_check(
    path: Path, site: SiteConfig, tree: yaml.Node | None, dirs: list[Path]
) -> tuple[list[ConfigProblem], dict[str, Any], dict[str, Path]]:
    problems: list[ConfigProblem] = []
    profiles: dict[str, Any] = {}
    files: dict[str, Path] = {}
    seen_devices: dict[str, str] = {}
    seen_endpoints: dict[str, str] = {}
    lane_ids: set[str] = set()

    def problem(loc: tuple[Any, ...], message: str, fix: str) -> None:
        problems.append(ConfigProblem(str(path), _key_path(loc), message, fix, _yaml_line(tree, loc)))

    if site.central is not None:
        problems.extend(_central_problems(path, site.central, tree, site.gate))
    for li, lane in enumerate(site.lanes):
        if lane.id in lane_ids:
            problem(("lanes", li, "id"), f"lane id '{lane.id}' is used twice", "give every lane its own id")
        lane_ids.add(lane.id)
        kinds = [d.kind for d in lane.devices]
        if kinds.count("barrier") != 1:
            problem(("lanes", li, "devices"), f"lane has {kinds.count('barrier')} barrier devices",
                    "give every lane exactly one device of kind barrier")
        for reading in lane.policy.required_readings:
            if not any(k in kinds for k in READING_SOURCES[reading]):
                problem(("lanes", li, "policy", "required_readings"),
                        f"'{reading}' is required but no device of the lane can read it",
                        f"add a device of kind {' or '.join(READING_SOURCES[reading])}, or drop '{reading}'")
        for di, device in enumerate(lane.devices):
            loc = ("lanes", li, "devices", di)
            if device.id in seen_devices:
                problem(loc + ("id",), f"device id '{device.id}' is also used in lane {seen_devices[device.id]}",
                        "give every device its own id")
            seen_devices[device.id] = lane.id
            if device.transport.type not in TRANSPORTS_BY_KIND[device.kind]:
                problem(loc + ("transport", "type"),
                        f"a {device.kind} cannot use transport '{device.transport.type}'",
                        f"use type {' or '.join(TRANSPORTS_BY_KIND[device.kind])}")
            endpoint = _endpoint(device)
            if endpoint in seen_endpoints:
                problem(loc + ("transport",), f"{endpoint} is also used by device {seen_endpoints[endpoint]}",
                        "give each device its own port or topic")
            seen_endpoints[endpoint] = device.id
            if device.profile not in profiles:
                found = find_profile(device.profile, dirs)
                if found is None:
                    problem(loc + ("profile",), *_unknown_profile(device.profile, dirs))
                    continue
                try:
                    profiles[device.profile] = load_profile(device.profile, dirs)
                    files[device.profile] = found
                except ConfigError as exc:
                    problems.extend(p for p in exc.problems if p not in problems)
                    continue
            if profiles[device.profile].kind != device.kind:
                problem(loc + ("profile",),
                        f"profile '{device.profile}' is for a {profiles[device.profile].kind}, not a {device.kind}",
                        f"choose a {device.kind} profile")
    return problems, profiles, files


def _central_problems(path: Path, central: CentralConfig, tree: yaml.Node | None, gate: str) -> list[ConfigProblem]:
    """The gate's token: given once (inline or as a readable file holding a well-formed token)."""

    def problem(key: str, message: str, fix: str) -> ConfigProblem:
        loc = ("central", key)
        return ConfigProblem(str(path), _key_path(loc), message, fix, _yaml_line(tree, loc))

    issue = f"smartgate central token --gate {gate} --out <file>"
    if central.token is None and central.token_file is None:
        return [problem("token", "central needs this gate's token and none is given",
                        f"add token_file: <file holding the token> (make one with `{issue}` on central) "
                        "or token: <the token>")]
    if central.token is not None and central.token_file is not None:
        return [problem("token_file", "both token and token_file are given", "keep only one of them")]
    ca_path = central.ca_path(path.parent)
    if ca_path is not None and not ca_path.is_file():
        return [problem("ca_file", f"cannot read {ca_path}", "name the PEM file of the CA that signed central's "
                                                             "certificate (e.g. the gate CA's ca.crt)")]
    token_path = central.token_path(path.parent)
    if token_path is not None:
        try:
            read_token_file(token_path)
        except TokenError as exc:
            return [problem("token_file", str(exc), f"write the gate's token into {token_path} (`{issue}`) "
                                                     "or correct the path")]
    return []


def _endpoint(device: DeviceConfig) -> str:
    transport = device.transport
    if isinstance(transport, ModbusTcpTransport):
        return f"modbus tcp {transport.host}:{transport.port}"
    if isinstance(transport, SerialTransport | ModbusRtuTransport):
        return f"serial port {transport.port}"
    if isinstance(transport, VideoTransport):
        return f"video source {transport.source}"
    return f"mqtt topic {transport.topic}"


def _search_dirs(path: Path, profile_dir: Path | None) -> list[Path]:
    return [profile_dir] if profile_dir is not None else profile_dirs(path)


def load_site(path: str | Path, profile_dir: Path | None = None) -> LoadedSite:
    """Load, validate and cross-check a site file; raise ConfigError listing every problem.

    Profiles come from `profile_dir` when given, else from a `devices/` folder beside the site file and
    then the shipped ones. A site that fails validation still has its profiles checked, so that one run
    names every problem.
    """
    path = Path(path)
    dirs = _search_dirs(path, profile_dir)
    data, tree = _read_yaml(path)
    try:
        site = SiteConfig.model_validate(data)
    except ValidationError as exc:
        problems = _validation_problems(path, exc, tree, root=SiteConfig, data=data)
        raise ConfigError(problems + _raw_profile_problems(path, data, tree, dirs)) from exc
    problems, profiles, files = _cross_check(path, site, tree, dirs)
    if problems:
        raise ConfigError(problems)
    return LoadedSite(path=path, site=site, profiles=profiles, profile_files=files)


def site_from_mapping(data: dict[str, Any], origin: str = "<scenario>", profile_dir: Path | None = None) -> LoadedSite:
    """Validate a site given as a mapping (scenarios, tests); same checks as load_site."""
    dirs = _search_dirs(Path(origin), profile_dir)
    try:
        site = SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_validation_problems(Path(origin), exc, None, root=SiteConfig, data=data)
                          + _raw_profile_problems(Path(origin), data, None, dirs)) from exc
    problems, profiles, files = _cross_check(Path(origin), site, None, dirs)
    if problems:
        raise ConfigError(problems)
    return LoadedSite(path=Path(origin), site=site, profiles=profiles, profile_files=files)


# ---------------------------------------------------------------- the node's data folder

# What only a node's data dir holds (any one of them marks it): its databases, its gate PKI, its journal-head key
# (edge/journal.py HEAD_KEY_FILE, made at enrolment before the node's first start), its bdSeq counters.
NODE_FILES = ("journal.sqlite", "declarations.sqlite", "users.sqlite", "pki", "journal-head.key", "mqtt_bd_seq",
              "sparkplug_bd_seq", "journal-reserve.bin")


class DataDirError(Exception):
    """A --data-dir (or the site's data_dir) that cannot be the node's data folder; the message says why."""


def check_data_dir(path: Path, *, given: bool, must_exist: bool = False, needs: str | None = None,
                   writes: bool = False) -> Path:
    """The data folder, refused with a message when it is a file, someone else's folder, missing or read-only.

    `given`: named by --data-dir (else the site's data_dir, for the message); `must_exist`: a command that
    only reads; `needs`: a file the command reads (`declarations.sqlite`); `writes`: it must be writable.
    """
    what = f"--data-dir {path}" if given else f"the site's data_dir {path}"
    if path.exists() and not path.is_dir():
        raise DataDirError(f"{what} is a file, not a folder: give the node's data folder")
    if not path.exists():
        if must_exist:
            raise DataDirError(f"{what} does not exist: nothing to read there (a typo? the node's folder is the "
                               "site's data_dir, or the --data-dir it runs with)")
        return path
    names = {entry.name for entry in path.iterdir()}
    if names and not names & set(NODE_FILES):
        raise DataDirError(f"{what} is not a node's data folder (it holds {len(names)} other entries and none of "
                           f"{', '.join(NODE_FILES[:3])}): give the node's data folder, or an empty or new one")
    if needs and needs not in names:
        raise DataDirError(f"{what} has no {needs} yet: is it the right node's folder?")
    if writes and not os.access(path, os.W_OK | os.X_OK):
        raise DataDirError(f"{what} is not writable by this user: run as the node's user, or fix its permissions")
    return path
