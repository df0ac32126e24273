"""Small sites for tests that run the real node as a separate process (simulators/node_process.py)."""

from __future__ import annotations

from typing import Any

from simulators.broker import free_port
from simulators.node_process import NodeProcess, write_site

__all__ = ["NodeProcess", "secure_small_site", "small_site", "write_site"]


def small_site(gate: str, broker_port: int, central: dict[str, Any] | None = None, *,
               tls: dict[str, str] | None = None) -> dict[str, Any]:
    """One lane whose PLC nobody serves (a free port): enough for a node to start and publish telemetry.

    `tls`: the site's `mqtt.tls` files (see secure_small_site); without it the site says `insecure: true`."""
    mqtt: dict[str, Any] = {"host": "127.0.0.1", "port": broker_port, "client_id": f"test-{gate}-devices"}
    mqtt.update({"tls": tls} if tls is not None else {"insecure": True})
    site: dict[str, Any] = {
        "gate": gate,
        "mqtt": mqtt,
        "kiosk": {"host": "127.0.0.1", "port": 0},
        "lanes": [{
            "id": "L1", "direction": "import", "policy": {"required_readings": ["plate"]},
            "devices": [
                {"id": "L1-plc", "kind": "barrier", "profile": "generic-barrier-plc",
                 "transport": {"type": "modbus_tcp", "host": "127.0.0.1", "port": free_port()}},
                {"id": "L1-anpr", "kind": "anpr", "profile": "generic-anpr-camera",
                 "transport": {"type": "mqtt", "topic": f"gate/{gate}/L1/anpr"}},
            ],
        }],
    }
    if central is not None:
        site["central"] = central
    return site


def secure_small_site(gate: str, broker, central: dict[str, Any] | None = None) -> dict[str, Any]:
    """small_site on a secured PrivateBroker: the node's certificates, the site's ACL in force."""
    from edge.config import site_from_mapping

    site = small_site(gate, broker.port, central)
    bus = broker.credentials(site["mqtt"]["client_id"])
    uplink = broker.credentials(f"smartgate-{gate}-node")
    sparkplug = broker.credentials(f"smartgate-{gate}-sparkplug")
    site["mqtt"] = {**site["mqtt"], "insecure": False, "tls": {
        "ca": str(bus.ca), "cert": str(bus.cert), "key": str(bus.key),
        "uplink_cert": str(uplink.cert), "uplink_key": str(uplink.key),
        "sparkplug_cert": str(sparkplug.cert), "sparkplug_key": str(sparkplug.key)}}
    broker.load_site(site_from_mapping(site).site)
    return site
