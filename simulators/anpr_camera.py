"""ANPR camera simulator: publishes plate results as the camera's JSON over a real MQTT broker."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.protocols.anpr_json import AnprFields, AnprResult, encode_anpr_message


class AnprCameraSimulator:
    """One camera publishing to one topic."""

    def __init__(self, host: str, port: int, topic: str, camera_id: str,
                 fields: AnprFields | None = None):
        self.topic, self.camera_id = topic, camera_id
        self.fields = fields or AnprFields()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{camera_id}")
        self._host, self._port = host, port
        self.published = 0

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect to the broker (blocking until connected)."""
        self._client.connect(self._host, self._port, keepalive=10)
        self._client.loop_start()
        deadline = time.monotonic() + timeout_s
        while not self._client.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError(f"camera simulator could not connect to {self._host}:{self._port}")
            time.sleep(0.01)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish_plate(self, plate: str, confidence: float = 0.95, when: float | None = None) -> None:
        """Publish one plate read (QoS 1)."""
        result = AnprResult(plate=plate, confidence=confidence, timestamp=when or time.time(),
                            camera_id=self.camera_id)
        self.publish_raw(encode_anpr_message(result, self.fields))

    def publish_raw(self, payload: bytes) -> None:
        """Publish a payload as it is (malformed messages for tests)."""
        info = self._client.publish(self.topic, payload, qos=1)
        info.wait_for_publish(5)
        self.published += 1
