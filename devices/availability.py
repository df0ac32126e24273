"""Whether a device answers: reports a fault once when it stops and a recovery once when it is back."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from devices.driver import Started
from devices.health import DeviceHealth
from devices.readings import DeviceEvent, DeviceFault, DeviceRecovered
from devices.transports.mqtt import MqttBus

log = logging.getLogger(__name__)


class Availability:
    """Turns a device's many up/down observations into one DeviceFault / DeviceRecovered per change."""

    def __init__(self, device_id: str, health: DeviceHealth, sink: Callable[[DeviceEvent], None]):
        self.device_id, self.health, self.sink = device_id, health, sink
        self.faulty = False

    def up(self) -> None:
        """The device answered properly."""
        self.health.connected = True
        if self.faulty:
            self.faulty = False
            self.health.last_error = None
            log.info("%s answers again", self.device_id)
            self.sink(DeviceRecovered(self.device_id, time.time()))

    def down(self, error: str) -> None:
        """The device failed (the first failure of an outage is reported)."""
        self.health.connected = False
        self.health.last_error = error
        if not self.faulty:
            self.faulty = True
            log.warning("%s fault: %s", self.device_id, error)
            self.sink(DeviceFault(self.device_id, error, time.time()))


class MqttAvailability(Availability):
    """An MQTT device is up while the broker is up and its `<topic>/status` is not "offline"."""

    def __init__(self, device_id: str, health: DeviceHealth, sink: Callable[[DeviceEvent], None], what: str):
        super().__init__(device_id, health, sink)
        self.what = what
        self._broker_up = False
        self._online = True

    def on_broker(self, up: bool, error: str | None) -> None:
        self._broker_up = up
        self._update(None if up else f"MQTT broker: {error}")

    def on_status(self, topic: str, payload: bytes) -> None:
        self._online = payload.strip().lower() != b"offline"
        self._update(None)

    def _update(self, broker_error: str | None) -> None:
        error = broker_error or (None if self._online else f"{self.what} offline (its last will)")
        if error is not None:
            self.down(error)
        elif self._broker_up:
            self.up()


class MqttDeviceDriver:
    """Base of drivers for devices that publish on an MQTT topic with `<topic>/status` beside it."""

    kind = "mqtt"
    what = "device"

    def __init__(self, device_id: str, topic: str, bus: MqttBus, sink: Callable[[DeviceEvent], None]):
        self.device_id, self.topic, self.bus, self.sink = device_id, topic, bus, sink
        self.health = DeviceHealth(device_id, self.kind)
        self.availability = MqttAvailability(device_id, self.health, sink, self.what)
        self._stopped = False

    def start(self) -> Started:
        """Subscribe to results and status at once; the broker's state is the device's too.

        Call it before the bus connects, or the driver misses the broker's first "up". It returns
        an awaitable that is already done, so `await driver.start()` works as for every driver.
        """
        self._stopped = False
        self.bus.subscribe(self.topic, self._deliver)
        self.bus.subscribe(f"{self.topic}/status", self.availability.on_status, retained=True)  # a will is retained
        self.bus.on_state(self._on_broker_state)
        return Started()

    async def stop(self) -> None:
        """Stop passing this device's messages on; the shared bus itself is stopped by its owner."""
        self._stopped = True

    def _deliver(self, topic: str, payload: bytes) -> None:
        if not self._stopped:
            self._on_message(topic, payload)

    def _on_broker_state(self, up: bool, error: str | None) -> None:
        self.health.reconnects = self.bus.health.reconnects
        self.availability.on_broker(up, error)

    def _on_message(self, topic: str, payload: bytes) -> None:
        raise NotImplementedError
