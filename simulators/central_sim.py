"""The central system for the demo and tests: the reference central service on loopback (SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.broker_policy import CENTRAL_IDENTITY
from edge.config import LoadedSite, site_from_mapping
from simulators.broker import PrivateBroker
from sync.central.server import CentralServer
from sync.keys import write_keypair
from sync.tokens import new_token, write_token_file


def start_central(workdir: Path, broker: PrivateBroker, gate: str) -> tuple[CentralServer, dict[str, Any]]:
    """Start central with a throwaway key pair and a token for `gate`; return it and the site's `central:` section."""
    workdir.mkdir(parents=True, exist_ok=True)
    private, public = workdir / "central.key", workdir / "central.pub.pem"
    write_keypair(private, public)
    token, token_file = new_token(), workdir / f"{gate}.token"
    write_token_file(token_file, token)
    server = CentralServer(f"sqlite:///{workdir / 'central.sqlite'}", private, port=0,
                           mqtt=central_mqtt(broker), tokens={gate: token}).start()
    return server, {"url": server.url, "public_key": str(public), "token_file": str(token_file),
                    "feed_poll_s": 5.0, "down_after_s": 10.0}


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


async def publish_declarations(central_url: str, declarations: list, node, timeout_s: float = 15.0) -> bool:
    """Publish declarations at central and wait until the node's cache has them all (via the feed)."""
    import asyncio
    import time

    import httpx

    from edge.declarations import declaration_to_mapping

    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{central_url}/api/v1/declarations",
                                     json={"declarations": [declaration_to_mapping(d) for d in declarations]})
        response.raise_for_status()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(node.cache.get(d.number) is not None for d in declarations):
            return True
        await asyncio.sleep(0.1)
    return False
