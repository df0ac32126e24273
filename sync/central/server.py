"""Runs the central service: in a background thread (tests, demo) or in the foreground (`smartgate central`)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from sync.central.app import CentralMqtt, create_central_app
from sync.central.store import CentralStore
from sync.keys import load_private_key


class CentralServer:
    """Central on a store, optionally with its MQTT side and TLS.

    `sock`: serve on this listening socket (one of several workers, sync/central/workers.py) instead of binding
    host:port; `mqtt_options` go to CentralMqtt (client id, shared subscription group, state host).

    At start it registers `tokens` (gate -> token), `head_keys` (gate -> the node's journal-head
    public key, base64) and `api_tokens` (name -> (role, token)). With `tls=(cert, key)` it serves
    HTTPS (a server certificate from edge/pki.py); without, plain HTTP (tests of the plumbing only).
    """

    def __init__(self, db_url: str, private_key, *, host: str = "127.0.0.1", port: int = 0,
                 mqtt: tuple[str, int] | None = None, silent_after_s: float = 60.0,
                 tokens: dict[str, str] | None = None, head_keys: dict[str, str] | None = None,
                 api_tokens: dict[str, tuple[str, str]] | None = None,
                 tls: tuple[str | Path, str | Path] | None = None, mqtt_options: dict | None = None,
                 sock: socket.socket | None = None):
        if isinstance(private_key, str | Path):
            private_key = load_private_key(private_key)
        self.store = CentralStore(db_url)
        for gate, token in (tokens or {}).items():
            self.store.enrol_gate(gate, token, (head_keys or {}).get(gate))
        for name, (role, token) in (api_tokens or {}).items():
            self.store.set_api_token(name, role, token)
        self.mqtt = CentralMqtt(self.store, *mqtt, **(mqtt_options or {})) if mqtt else None
        self.app = create_central_app(self.store, private_key, mqtt=self.mqtt, silent_after_s=silent_after_s)
        ssl = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls else {}
        self.tls = tls is not None
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port, log_level="warning",
                                                     lifespan="off", **ssl))
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._sockets = [sock] if sock is not None else None  # a listening socket shared with other workers
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.host = host

    @property
    def started(self) -> bool:
        """True once the server accepts connections."""
        return bool(self._server.started)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> CentralServer:
        if self.mqtt is not None:
            self.mqtt.start()
        self._thread = threading.Thread(target=self._server.run, name="central", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("central service did not start")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def serve_forever(self) -> None:
        if self.mqtt is not None:
            self.mqtt.start()
        try:
            self._server.run(sockets=self._sockets)
        finally:
            self.close()

    def request_stop(self) -> None:
        """Ask a serving server to finish its requests and return (safe from a signal handler)."""
        self._server.should_exit = True

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.close()

    def close(self) -> None:
        if self.mqtt is not None:
            self.mqtt.stop()
            self.mqtt = None
        self.store.close()
