"""Base of the simulators that publish over MQTT: connection, "online"/"offline" status, faults.

Like a real device at the gate, a simulator connects over TLS with its own client certificate
(`tls`, e.g. `PrivateBroker.credentials(device_id)`); `tls=None` is plaintext (a broker of your own).
"""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt

from devices.transports.mqtt import MqttTls, new_client


class MqttDeviceSimulator:
    """A device publishing on `topic`, announcing itself on `<topic>/status` (will: "offline")."""

    def __init__(self, host: str, port: int, topic: str, client_id: str, tls: MqttTls | None = None):
        self.host, self.port, self.topic, self.client_id, self.tls = host, port, topic, client_id, tls
        self._client = self._new_client()
        self.published = 0
        self.lost = 0

    @property
    def status_topic(self) -> str:
        return f"{self.topic}/status"

    def _new_client(self) -> mqtt.Client:
        client = new_client(f"sim-{self.client_id}", self.tls)  # the broker replaces the id by the cert's CN
        client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        client.on_connect = self._on_connect
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:  # also after a broker restart: say "online" again
            client.publish(self.status_topic, "online", qos=1, retain=True)

    def start(self, timeout_s: float = 10.0) -> None:
        """Connect to the broker (blocking until connected) and announce "online"."""
        self._client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self._client.connect(self.host, self.port, keepalive=2)
        self._client.loop_start()
        deadline = time.monotonic() + timeout_s
        while not self._client.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.client_id} could not connect to {self.host}:{self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Say "offline" and disconnect."""
        if self._client.is_connected():
            self._client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(2)
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def publish_raw(self, payload: bytes) -> None:
        """Publish a payload as it is (QoS 1); while offline the message is lost, as on a real device."""
        if not self._client.is_connected():
            self.lost += 1
            return
        try:
            self._client.publish(self.topic, payload, qos=1).wait_for_publish(5)
        except (RuntimeError, ValueError):
            self.lost += 1
            return
        self.published += 1

    # -- faults (see simulators/faults.py)
    def fault_disconnect(self) -> None:
        """The device drops off the network: the broker publishes its will ("offline")."""
        self._client.loop_stop()
        sock = self._client.socket()
        if sock:
            sock.close()

    def recover_disconnect(self) -> None:
        self._client = self._new_client()
        self.start()
