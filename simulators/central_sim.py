"""The central system for the demo and tests: the reference central service on loopback over HTTPS (SQLite).

Everything a real deployment does by hand is done here with no manual step: a CA and central's TLS
server certificate (edge/pki.py), central's signing key, the node's journal-head key (in the node's
data dir) enrolled at central with the gate's token, and one publisher and one monitor token for
the demo's own calls (`central_client`).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import httpx

from edge.broker_policy import CENTRAL_IDENTITY
from edge.config import LoadedSite, site_from_mapping
from edge.journal import head_public_b64, load_or_create_head_key
from edge.pki import issue, make_ca
from simulators.broker import PrivateBroker
from sync.central.server import CentralServer
from sync.keys import write_keypair
from sync.tokens import new_token, write_token_file


def start_central(workdir: Path, broker: PrivateBroker | None, gate: str, *, node_data_dir: Path | None = None,
                  db_url: str | None = None) -> tuple[CentralServer, dict[str, Any]]:
    """Start central (HTTPS) with a throwaway CA, signing key and gate token; return it and the site's `central:`.

    The node's journal-head key is made in `node_data_dir` (default: `workdir/../node`, where
    simulators/gate.py keeps the demo node's data) and enrolled with the gate's token. Central keeps its
    data in `db_url` (default: SQLite in `workdir`). The server carries `ca_file`, `publisher_token` and
    `monitor_token` for `central_client`, and what `restart_central` needs.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    private, public = workdir / "central.key", workdir / "central.pub.pem"
    write_keypair(private, public)
    ca = workdir / "ca"
    if not (ca / "ca.crt").exists():
        make_ca(ca, "smartgate demo central CA")
    server_cert = issue(ca, workdir / "tls", "central", server=True, hosts=("127.0.0.1", "localhost"))
    token, token_file = new_token(), workdir / f"{gate}.token"
    write_token_file(token_file, token)
    node_key = load_or_create_head_key(node_data_dir or workdir.parent / "node")
    roles = {"demo-publisher": ("publisher", new_token()), "demo-monitor": ("monitor", new_token())}
    args = (db_url or f"sqlite:///{workdir / 'central.sqlite'}", private)
    options = dict(tokens={gate: token}, head_keys={gate: head_public_b64(node_key)}, api_tokens=roles,
                   tls=(server_cert.cert, server_cert.key))
    server = CentralServer(*args, port=0, mqtt=central_mqtt(broker) if broker is not None else None,
                           **options).start()  # type: ignore[arg-type]
    server.remake = lambda: CentralServer(  # type: ignore[attr-defined]
        *args, port=server.port, mqtt=central_mqtt(broker) if broker is not None else None, **options)
    server.ca_file = ca / "ca.crt"  # type: ignore[attr-defined]
    server.publisher_token = roles["demo-publisher"][1]  # type: ignore[attr-defined]
    server.monitor_token = roles["demo-monitor"][1]  # type: ignore[attr-defined]
    return server, {"url": server.url, "public_key": str(public), "token_file": str(token_file),
                    "ca_file": str(ca / "ca.crt"), "feed_poll_s": 5.0, "down_after_s": 10.0}


def restart_central(server: CentralServer, down_s: float = 0.0) -> CentralServer:
    """Stop a central made by start_central and, `down_s` later, start a new one on the same port, data and
    credentials (a restart of central's process); returns the new server."""
    server.stop()
    time.sleep(down_s)
    fresh = server.remake()  # type: ignore[attr-defined]
    for name in ("remake", "ca_file", "publisher_token", "monitor_token"):
        setattr(fresh, name, getattr(server, name))
    return fresh.start()


def central_mqtt(broker: PrivateBroker) -> tuple:
    """CentralServer's `mqtt=` for this broker: central's own identity and certificate (plaintext broker: none)."""
    if not broker.secure:
        return broker.host, broker.port
    return broker.host, broker.port, CENTRAL_IDENTITY, broker.credentials(CENTRAL_IDENTITY)


def with_central(loaded: LoadedSite, central: dict[str, Any]) -> LoadedSite:
    """The same site, syncing with the given central."""
    data = loaded.site.model_dump()
    data["central"] = central
    return site_from_mapping(data, origin=str(loaded.path))


def central_client(central: CentralServer, role: str = "monitor", timeout_s: float = 10.0) -> httpx.AsyncClient:
    """An HTTPS client to the demo central holding its publisher or monitor token, checking its certificate."""
    token = {"publisher": central.publisher_token, "monitor": central.monitor_token}[role]  # type: ignore[attr-defined]
    return httpx.AsyncClient(base_url=central.url, timeout=timeout_s, headers={"Authorization": f"Bearer {token}"},
                             verify=ssl.create_default_context(cafile=str(central.ca_file)))  # type: ignore[attr-defined]


async def publish_declarations(central: CentralServer, declarations: list, node, timeout_s: float = 15.0) -> bool:
    """Publish declarations at central (as the demo publisher) and wait until the node's cache has them all."""
    from edge.declarations import declaration_to_mapping

    async with central_client(central, "publisher") as client:
        response = await client.post("/api/v1/declarations",
                                     json={"declarations": [declaration_to_mapping(d) for d in declarations]})
        response.raise_for_status()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(node.cache.get(d.number) is not None for d in declarations):
            return True
        await asyncio.sleep(0.1)
    return False
