"""Device-profile and transport schemas: what a vendor/model profile and a device's link may say.

A profile (`firmware_configs/devices/*.yaml`) describes one vendor/model: the barrier PLC's
register map, a serial indicator's frame format and line settings, a camera's JSON field names.
A transport says how the node reaches one device (Modbus TCP/RTU, a serial port, an MQTT topic, a
video source). The drivers and the sans-I/O codecs in `devices/` take these models; the site
loader (`edge/config.py`) validates the files against them and re-exports every name.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- device profiles


class BarrierCoils(_Strict):
    open: int = Field(ge=0, le=65535)
    close: int = Field(ge=0, le=65535)
    green_light: int = Field(ge=0, le=65535)
    red_light: int = Field(ge=0, le=65535)


class BarrierInputs(_Strict):
    arrival_loop: int = Field(ge=0, le=65535)
    safety_loop: int = Field(ge=0, le=65535)
    exit_loop: int = Field(ge=0, le=65535)
    boom_opened: int = Field(ge=0, le=65535)
    boom_closed: int = Field(ge=0, le=65535)


class BarrierRegisters(_Strict):
    heartbeat: int = Field(ge=0, le=65535)
    fault_code: int = Field(ge=0, le=65535)
    cycle_counter: int = Field(ge=0, le=65535)


class BarrierModbusMap(_Strict):
    """The barrier PLC's register map."""

    device_id: int = Field(default=1, ge=0, le=247)
    coils: BarrierCoils
    discrete_inputs: BarrierInputs
    holding_registers: BarrierRegisters
    poll_interval_ms: int = Field(default=50, ge=10, le=5000)
    heartbeat_period_s: float = Field(default=1.0, gt=0, le=60)
    heartbeat_timeout_s: float = Field(default=3.0, gt=0, le=600)
    request_timeout_s: float = Field(default=1.0, gt=0, le=30)
    # How the PLC takes the open/close command coils. pulse: set the coil, hold it pulse_ms, release it
    # (every command is a fresh rising edge: right for edge-triggered PLCs and the safe default); level: the
    # coil stays set until the other command, which releases it first (open and close are never set together).
    command_mode: Literal["pulse", "level"] = "pulse"
    pulse_ms: int = Field(default=300, ge=20, le=10_000)
    # Modbus RTU only (TCP recovers lost segments itself, and a TCP timeout is a slow or dead PLC, not noise):
    # attempts after the first for a request that got no valid answer (timeout, CRC error on RS-485); an
    # exception reply is an answer and is not retried. Once a request has spent its retries, the next ones
    # get a single attempt until the PLC answers again, so a dead PLC never stalls its line for long.
    retries: int = Field(default=2, ge=0, le=5)

    @model_validator(mode="after")
    def _heartbeat_timeout_exceeds_period(self) -> BarrierModbusMap:
        if self.heartbeat_timeout_s <= self.heartbeat_period_s:
            raise ValueError(
                "heartbeat_timeout_s must be longer than heartbeat_period_s, "
                "or the PLC goes safe between two heartbeats"
            )
        return self


class BarrierProfile(_Strict):
    id: str
    kind: Literal["barrier"]
    vendor: str = ""
    model: str = ""
    modbus: BarrierModbusMap


class SerialSettings(_Strict):
    baudrate: int = Field(default=9600, ge=300, le=921600)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1


class EsealProfile(_Strict):
    id: str
    kind: Literal["eseal"]
    vendor: str = ""
    model: str = ""
    frame_format: Literal["eseal-ascii", "eseal-binary"]
    serial: SerialSettings = SerialSettings()


_ZONE = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$"  # an IANA time zone name, e.g. Asia/Ho_Chi_Minh


class AnprFieldNames(_Strict):
    plate: str = "plate"
    confidence: str = "confidence"
    timestamp: str = "timestamp"
    camera: str = "camera_id"


class AnprProfile(_Strict):
    id: str
    kind: Literal["anpr"]
    vendor: str = ""
    model: str = ""
    payload_format: Literal["anpr-json"]
    fields: AnprFieldNames = AnprFieldNames()
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    timezone: str | None = Field(default=None, pattern=_ZONE)  # zone of ISO times sent without one; None: refused


class WeighbridgeProfile(_Strict):
    """A weighbridge indicator with continuous (or polled SMA) serial output."""

    id: str
    kind: Literal["weighbridge"]
    vendor: str = ""
    model: str = ""
    frame_format: Literal["toledo-continuous", "sma", "rinstrum"]
    checksum: bool = False  # Toledo: the optional CHK byte is sent
    # Toledo variants from vendors' manuals, each off by default (the default decoder stays strict):
    blank_tare: bool = False  # tare sent as six spaces when there is none (METTLER TOLEDO JAGUAR)
    clone_status_bits: bool = False  # SWA bits 5/6 as Liden and Chinese indicators send them (0/1 or 1/1)
    short_frame: bool = False  # Cardinal "short" format: STX SWA SWB SWC W×6 CR [CHK], no tare
    # SMA variants: cardinal (11-character weights, status e, oz), fairbanks (stability time-out reply).
    sma_variant: Literal["standard", "cardinal", "fairbanks"] = "standard"
    poll_interval_s: float | None = Field(default=None, gt=0, le=10)  # SMA: send `W` this often
    serial: SerialSettings = SerialSettings()
    stable_band_kg: float = Field(default=20.0, gt=0)
    stable_hold_s: float = Field(default=2.0, ge=0, le=60)
    min_kg: float = Field(default=500.0, ge=0)

    @model_validator(mode="after")
    def _options_fit_the_format(self) -> WeighbridgeProfile:
        toledo_only = [name for name in ("blank_tare", "clone_status_bits", "short_frame") if getattr(self, name)]
        if toledo_only and self.frame_format != "toledo-continuous":
            raise ValueError(f"{', '.join(toledo_only)} only apply to frame_format toledo-continuous")
        if self.sma_variant != "standard" and self.frame_format != "sma":
            raise ValueError("sma_variant only applies to frame_format sma")
        if self.short_frame and self.blank_tare:
            raise ValueError("short_frame sends no tare: blank_tare cannot apply")
        return self


class ScannerProfile(_Strict):
    """A container scanner (NII) publishing scan messages over MQTT."""

    id: str
    kind: Literal["scanner"]
    vendor: str = ""
    model: str = ""
    payload_format: Literal["scanner-json"]
    timezone: str | None = Field(default=None, pattern=_ZONE)  # zone of ISO times sent without one; None: refused


class VideoCameraProfile(_Strict):
    """A camera that only streams video: the node reads plates and container codes itself (models/)."""

    id: str
    kind: Literal["camera"]
    vendor: str = ""
    model: str = ""
    max_fps: float = Field(default=10.0, gt=0, le=120)
    recognise_every_s: float = Field(default=0.2, gt=0, le=10)
    min_confidence: float = Field(default=0.6, ge=0, le=1)
    repeat_s: float = Field(default=5.0, ge=0, le=600)  # unread this long, a text has left the view: next time is new
    read: list[Literal["plates", "containers"]] = Field(default=["plates"], min_length=1)
    vote_frames: int = Field(default=2, ge=1, le=50)  # frames that must agree before a reading is reported
    vote_window_s: float = Field(default=2.0, gt=0, le=60)  # a vehicle's frames: the vote closes after this
    threads: int = Field(default=1, ge=1, le=64)  # onnxruntime threads for this node's readers


AnyProfile = BarrierProfile | EsealProfile | AnprProfile | WeighbridgeProfile | ScannerProfile | VideoCameraProfile
DeviceProfile = Annotated[AnyProfile, Field(discriminator="kind")]


# ---------------------------------------------------------------- transports: how the node reaches a device


class ModbusTcpTransport(_Strict):
    type: Literal["modbus_tcp"]
    host: str
    port: int = Field(ge=1, le=65535)


class ModbusRtuTransport(_Strict):
    type: Literal["modbus_rtu"]
    port: str = Field(min_length=1)
    baudrate: int = Field(default=19200, ge=300, le=921600)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1


class SerialTransport(_Strict):
    type: Literal["serial"]
    port: str = Field(min_length=1)
    baudrate: int | None = Field(default=None, ge=300, le=921600)


class VideoTransport(_Strict):
    type: Literal["video"]
    source: str = Field(min_length=1)  # a file, an RTSP URL, or a device index ("0")
    loop: bool = False  # files: play again from the start (testing)


class MqttTransport(_Strict):
    type: Literal["mqtt"]
    topic: str = Field(min_length=1)


Transport = Annotated[
    ModbusTcpTransport | ModbusRtuTransport | SerialTransport | MqttTransport | VideoTransport,
    Field(discriminator="type"),
]
