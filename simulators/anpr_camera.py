"""ANPR camera simulator: publishes plate results as the camera's JSON over a real MQTT broker."""

from __future__ import annotations

import time

from devices.protocols.anpr_json import AnprFields, AnprResult, encode_anpr_message
from devices.transports.mqtt import MqttTls
from simulators.mqtt_device import MqttDeviceSimulator


class AnprCameraSimulator(MqttDeviceSimulator):
    """One camera publishing to one topic."""

    def __init__(self, host: str, port: int, topic: str, camera_id: str, fields: AnprFields | None = None,
                 tls: MqttTls | None = None):
        super().__init__(host, port, topic, camera_id, tls)
        self.camera_id = camera_id
        self.fields = fields or AnprFields()

    def publish_plate(self, plate: str, confidence: float = 0.95, when: float | None = None) -> None:
        """Publish one plate read (QoS 1)."""
        result = AnprResult(plate=plate, confidence=confidence, timestamp=when or time.time(),
                            camera_id=self.camera_id)
        self.publish_raw(encode_anpr_message(result, self.fields))

    def fault_garbage(self) -> None:
        """A malformed message on the camera's topic."""
        self.publish_raw(b'{"plate": 12, "confidence": "high"')
