"""One MQTT connection: subscriptions re-made on reconnect, messages handed to the loop.

paho-mqtt runs its network thread; every callback is moved onto the asyncio loop with
call_soon_threadsafe so that drivers never run on paho's thread. The only code that runs on paho's
thread are the connection hooks (`before_each_connect`, `after_each_connect`), which set the last
will and publish a birth message: both must happen at the exact moment of (re)connecting.

A node has two: the device bus (clean session: a camera's plate read queued while the node was
away must not be replayed to a later truck) and its own persistent session to central (telemetry,
birth/death, feed notifications; `clean_session=False`, so what central sends while the node's link
is down is delivered when it returns).

Both connect over TLS with their own client certificate from the gate CA (`MqttTls`; the broker
takes the certificate's common name as user name and client id, see edge/broker_policy.py). A
retained message is never a reading: a subscription drops retained messages (counted in
`retained_dropped`, logged) unless it asks for them (`retained=True`: device status, whose last
will is retained by design).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.transports.modbus import LinkHealth

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class MqttTls:
    """One client's TLS identity on the broker: the gate CA that signed the broker, its certificate and key."""

    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        """A client TLS context: the broker's certificate must chain to the gate CA and name the host."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert), str(self.key))
        return context

    def apply(self, client: mqtt.Client) -> None:
        """Make a paho client connect with this identity."""
        client.tls_set_context(self.context())


def new_client(client_id: str, tls: MqttTls | None, *, clean_session: bool = True) -> mqtt.Client:
    """A paho-mqtt 2.x client (MQTT 3.1.1), over TLS with this identity when tls is given."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
    if tls is not None:
        tls.apply(client)
    return client


class MqttBus:
    """A paho-mqtt client bound to an asyncio loop."""

    def __init__(self, host: str, port: int, client_id: str, *, username: str | None = None,
                 password: str | None = None, keepalive: int = 10, clean_session: bool = True,
                 tls: MqttTls | None = None):
        """`clean_session=False` (MQTT 3.1.1) keeps the broker-side session of this stable client id:
        its QoS 1 subscriptions, and the QoS 1 messages for them while it is disconnected. `tls=None`
        is plaintext: only for a site that says `mqtt.insecure: true`."""
        self.host, self.port, self.keepalive = host, port, keepalive
        self.client_id, self.clean_session, self.tls = client_id, clean_session, tls
        self.health = LinkHealth()
        self.retained_dropped = 0  # retained messages on reading topics, never taken
        self._client = new_client(client_id, tls, clean_session=clean_session)
        if username:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_pre_connect = self._on_pre_connect
        self._before_connect: list[Callable[[], None]] = []
        self._after_connect: list[Callable[[], None]] = []
        self.session_present: bool | None = None  # the broker still had our session at the last connect
        self._handlers: dict[str, list[tuple[MessageHandler, bool]]] = {}
        self._state_listeners: list[Callable[[bool, str | None], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = asyncio.Event()
        self._ever_connected = False

    def subscribe(self, topic: str, handler: MessageHandler, *, retained: bool = False) -> None:
        """Call handler(topic, payload) on the loop for every message on topic (QoS 1).

        A retained message (the broker's stored copy, delivered on every (re)subscription) reaches the
        handler only with `retained=True`; otherwise it is dropped, counted and logged.
        """
        self._handlers.setdefault(topic, []).append((handler, retained))
        if self._client.is_connected():
            self._client.subscribe(topic, qos=1)

    def on_state(self, listener: Callable[[bool, str | None], None]) -> None:
        """Call listener(connected, error) on the loop when the broker link goes up or down."""
        self._state_listeners.append(listener)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Queue a message for the broker (thread-safe); the result can wait for its acknowledgement."""
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def before_each_connect(self, hook: Callable[[], None]) -> None:
        """Run hook() on paho's thread right before every connection attempt (to set the will for it)."""
        self._before_connect.append(hook)

    def after_each_connect(self, hook: Callable[[], None]) -> None:
        """Run hook() on paho's thread as soon as the broker accepts a connection, before re-subscribing
        (so a birth message is the first thing the new connection publishes)."""
        self._after_connect.append(hook)

    def set_will(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = True) -> None:
        """Set the last-will message (before start())."""
        self._client.will_set(topic, payload, qos=qos, retain=retain)

    async def start(self) -> None:
        """Connect in the background; returns at once (connection state via on_state)."""
        self._loop = asyncio.get_running_loop()
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive)
        self._client.loop_start()

    async def stop(self) -> None:
        """Disconnect and stop paho's thread (a stop is not an outage: listeners are not told)."""
        self._state_listeners.clear()
        self._client.disconnect()
        await asyncio.get_running_loop().run_in_executor(None, self._client.loop_stop)

    # paho's thread ------------------------------------------------------

    def _on_pre_connect(self, client, userdata) -> None:
        for hook in self._before_connect:
            try:
                hook()
            except Exception:  # a failed hook must not stop the reconnect loop
                log.exception("MQTT pre-connect hook failed")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._call_soon(self._set_state, False, f"broker refused: {reason_code}")
            return
        self.session_present = bool(getattr(flags, "session_present", False))
        for hook in self._after_connect:
            try:
                hook()
            except Exception:
                log.exception("MQTT connect hook failed")
        for topic in self._handlers:
            client.subscribe(topic, qos=1)
        self._call_soon(self._set_state, True, None)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._call_soon(self._set_state, False, f"disconnected: {reason_code}")

    def _on_message(self, client, userdata, message) -> None:
        self._call_soon(self._dispatch, message.topic, bytes(message.payload), bool(message.retain))

    def _call_soon(self, fn, *args) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    # the loop ------------------------------------------------------------

    def _set_state(self, up: bool, error: str | None) -> None:
        if up:
            if self._ever_connected:
                self.health.reconnects += 1
            self._ever_connected = True
            self.connected.set()
        else:
            self.connected.clear()
            self.health.last_error = error
        if self.health.connected == up:
            return
        self.health.connected = up
        for listener in self._state_listeners:
            listener(up, error)

    def _dispatch(self, topic: str, payload: bytes, retained: bool = False) -> None:
        self.health.last_ok_at = time.time()
        dropped = False
        for pattern, handlers in self._handlers.items():
            if mqtt.topic_matches_sub(pattern, topic):
                for handler, takes_retained in handlers:
                    if retained and not takes_retained:
                        dropped = True
                        continue
                    try:
                        handler(topic, payload)
                    except Exception:  # a bad handler must not stop the others
                        log.exception("handler for %s failed", topic)
        if dropped:
            self.retained_dropped += 1
            self.health.extra["retained_dropped"] = self.retained_dropped
            log.warning("dropped a retained message on %s: a retained message is never a reading", topic)
