"""A simulated serial cable: two pty pairs joined back to back, with faults a tester can inject.

The node opens `node_link`, the simulated device opens `device_link` (both stable symlinks to pty
devices); bytes written on one end arrive at the other. Cutting the wire closes both ptys, as
when a cable is pulled; reconnecting makes new ptys behind the same links.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import tty
from pathlib import Path


def unlink_port(link: Path) -> None:
    """Remove a port's link, as a USB-serial adapter's device node vanishes when it is pulled.

    (A stale link could otherwise point at a pty number the system has given to someone else.)
    """
    with contextlib.suppress(FileNotFoundError):
        link.unlink()


def make_linked_pty(link: Path) -> tuple[int, int]:
    """A raw pty pair whose slave is reachable at `link` (a symlink, replaced atomically)."""
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(link.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(os.ttyname(slave))
    tmp.replace(link)
    return master, slave


class SerialWire:
    """A null-modem cable between the node's port and a simulated device's port."""

    def __init__(self, node_link: str | Path, device_link: str | Path):
        self.node_link, self.device_link = Path(node_link), Path(device_link)
        self.delay_s = 0.0
        self.drop_to_node = False
        self._fds: dict[str, tuple[int, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.bytes_to_node = 0
        self.bytes_to_device = 0

    @property
    def connected(self) -> bool:
        return bool(self._fds)

    def start(self) -> None:
        """Create both ptys and start relaying (call from the event loop)."""
        self._loop = asyncio.get_running_loop()
        # Both slave fds stay open here, so a master never reads EIO when an end is not open.
        self._fds = {"node": make_linked_pty(self.node_link), "device": make_linked_pty(self.device_link)}
        self._loop.add_reader(self._fds["device"][0], self._relay, "device", "node")
        self._loop.add_reader(self._fds["node"][0], self._relay, "node", "device")

    def _relay(self, source: str, target: str) -> None:
        try:
            data = os.read(self._fds[source][0], 4096)
        except (OSError, KeyError):
            return
        if target == "node":
            if self.drop_to_node:
                return
            self.bytes_to_node += len(data)
        else:
            self.bytes_to_device += len(data)
        if self.delay_s and self._loop is not None:
            self._loop.call_later(self.delay_s, self._write, target, data)
        else:
            self._write(target, data)

    def _write(self, target: str, data: bytes) -> None:
        fds = self._fds.get(target)
        if fds is not None:
            with contextlib.suppress(OSError):
                os.write(fds[0], data)

    def inject_to_node(self, data: bytes) -> None:
        """Put bytes on the line towards the node (garbage, torn frames)."""
        self._write("node", data)

    def cut(self) -> None:
        """Pull the cable: both ends see their port fail."""
        for master, slave in self._fds.values():
            if self._loop is not None:
                self._loop.remove_reader(master)
            for fd in (master, slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._fds:
            unlink_port(self.node_link)
            unlink_port(self.device_link)
        self._fds = {}

    def reconnect(self) -> None:
        """Plug the cable back in (new ptys behind the same links)."""
        if not self._fds:
            self.start()

    def stop(self) -> None:
        self.cut()
