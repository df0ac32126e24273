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
        self._client = self._new_client()
        self._host, self._port = host, port
        self.published = 0
        self.lost = 0

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{self.camera_id}")
        client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        client.on_connect = self._on_connect
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:  # after a broker restart, say "online" again
            client.publish(self.status_topic, "online", qos=1, retain=True)

    @property
    def status_topic(self) -> str:
        return f"{self.topic}/status"

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect to the broker (blocking until connected) and announce "online" (will: "offline")."""
        self._client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self._client.connect(self._host, self._port, keepalive=2)
        self._client.loop_start()
        deadline = time.monotonic() + timeout_s
        while not self._client.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError(f"camera simulator could not connect to {self._host}:{self._port}")
            time.sleep(0.01)

    # -- faults (see simulators/faults.py)
    def fault_disconnect(self) -> None:
        """The camera drops off the network: the broker publishes its will ("offline")."""
        self._client.loop_stop()
        self._client.socket().close() if self._client.socket() else None

    def recover_disconnect(self) -> None:
        self._client = self._new_client()
        self.start()

    def fault_garbage(self) -> None:
        """A malformed message on the camera's topic."""
        self.publish_raw(b'{"plate": 12, "confidence": "high"')

    def stop(self) -> None:
        if self._client.is_connected():
            self._client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(2)
        self._client.disconnect()
        self._client.loop_stop()

    def publish_plate(self, plate: str, confidence: float = 0.95, when: float | None = None) -> None:
        """Publish one plate read (QoS 1)."""
        result = AnprResult(plate=plate, confidence=confidence, timestamp=when or time.time(),
                            camera_id=self.camera_id)
        self.publish_raw(encode_anpr_message(result, self.fields))

    def publish_raw(self, payload: bytes) -> None:
        """Publish a payload as it is (malformed messages for tests)."""
        if not self._client.is_connected():
            self.lost += 1  # offline camera: the read never leaves it
            return
        info = self._client.publish(self.topic, payload, qos=1)
        try:
            info.wait_for_publish(5)
        except (RuntimeError, ValueError):
            self.lost += 1
            return
        self.published += 1
