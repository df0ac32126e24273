"""Central red-team fixtures: the real central over HTTPS on loopback (as the demo starts it), its operators, a node.

`running_central` is `simulators.central_sim.start_central`: a gate CA, central's server certificate, its
signing key, gate HN enrolled with its token and the node's journal-head key (in `tmp_path/node`),
and a publisher and a monitor token; an admin token is added here. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from edge.cache import DeclarationCache
from edge.cli import DEFAULT_SITE
from edge.config import CentralConfig
from edge.journal import Journal
from simulators.central_sim import start_central
from sync.central.server import CentralServer
from sync.client import SyncService
from sync.tokens import new_token

GATE = "HN"


@dataclass
class Central:
    """A running central and what its operators and gate hold."""

    server: CentralServer
    section: dict[str, Any]  # the site's `central:` section for gate HN
    node_dir: Path
    admin_token: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ca_file(self) -> str:
        return self.section["ca_file"]

    @property
    def gate_token(self) -> str:
        return Path(self.section["token_file"]).read_text(encoding="utf-8").strip()

    def headers(self, who: str) -> dict[str, str]:
        """Authorization for 'publisher', 'monitor', 'admin' or 'gate' (HN's token)."""
        token = {"publisher": self.server.publisher_token, "monitor": self.server.monitor_token,  # type: ignore
                 "admin": self.admin_token, "gate": self.gate_token}[who]
        return {"Authorization": f"Bearer {token}"}

    def client(self, who: str | None = None, **kwargs) -> httpx.Client:
        """An HTTPS client that checks central's certificate, holding `who`'s token (None: no token)."""
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=self.ca_file),
                            headers=self.headers(who) if who else {}, timeout=10, **kwargs)

    def config(self, **overrides) -> CentralConfig:
        """Gate HN's site `central:` section, with quick retries for tests."""
        values = {**self.section, "feed_poll_s": 1.0, "down_after_s": 4.0, "backoff_initial_s": 0.1,
                  "backoff_max_s": 1.0, "request_timeout_s": 3.0}
        values.update(overrides)
        return CentralConfig(**values)


@contextlib.contextmanager
def running_central(tmp_path: Path) -> Iterator[Central]:
    """Central as the demo starts it (in `tmp_path/central`, node data in `tmp_path/node`), plus an admin."""
    server, section = start_central(tmp_path / "central", None, GATE, node_data_dir=tmp_path / "node")
    admin = new_token()
    server.store.set_api_token("test-admin", "admin", admin)
    try:
        yield Central(server, section, tmp_path / "node", admin)
    finally:
        server.stop()


class Node:
    """The node's sync side on a real journal and cache in `node_dir` (its journal-head key is enrolled)."""

    def __init__(self, node_dir: Path, config: CentralConfig):
        self.journal = Journal.open(node_dir / "journal.sqlite")
        self.cache = DeclarationCache.open(node_dir / "declarations.sqlite")
        self.sync = SyncService(GATE, config, self.journal, self.cache)

    async def stop(self) -> None:
        await self.sync.stop()
        self.journal.close()
        self.cache.close()


def site_file(tmp_path: Path, central: Central) -> Path:
    """The shipped site with gate HN's `central:` section, written next to the test's files."""
    import yaml

    from edge.config import load_site

    data = load_site(DEFAULT_SITE).site.model_dump(mode="json", exclude_none=True)
    data["gate"] = GATE
    data["central"] = {key: central.section[key] for key in ("url", "public_key", "token_file", "ca_file")}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
