"""E-seal reader simulator: writes frames into a pty pair, the node reads the other end.

The node's serial port path is a stable symlink (`link_path`) to the pty's slave device, so a
"cable pull" (closing the pty) and a "reconnect" (a new pty behind the same link) look to the
node exactly like a USB-serial adapter going away and coming back.
"""

from __future__ import annotations

import contextlib
import os
import random
import zlib
from datetime import UTC, datetime
from pathlib import Path

from devices.protocols.eseal_ascii import SealFrame, encode_seal_frame
from devices.protocols.eseal_binary import encode_binary_seal_frame
from devices.readings import SealStatus
from simulators.serial_wire import make_linked_pty, unlink_port


class EsealReaderSimulator:
    """One simulated reader behind one pty."""

    def __init__(self, link_path: str | Path, reader_id: str = "RDR01", frame_format: str = "eseal-ascii"):
        self.link_path = Path(link_path)
        self.frame_format = frame_format
        # The binary format carries a 32-bit reader id (8 hex digits).
        self.reader_id = reader_id if frame_format == "eseal-ascii" else f"{zlib.crc32(reader_id.encode()):08X}"
        self._master: int | None = None
        self._slave: int | None = None
        self.frames_sent = 0

    def start(self) -> None:
        """Create the pty and point link_path at it."""
        self._master, self._slave = make_linked_pty(self.link_path)

    def stop(self) -> None:
        """Close the pty: the node's reads fail as if the cable was pulled."""
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._master is not None:
            unlink_port(self.link_path)
        self._master = self._slave = None

    # -- faults (see simulators/faults.py)
    def fault_disconnect(self) -> None:
        """Pull the cable."""
        self.stop()

    def recover_disconnect(self) -> None:
        if self._master is None:
            self.start()

    def fault_garbage(self) -> None:
        """Line noise: bytes that are no frame at all."""
        self.write_raw(bytes(random.randrange(256) for _ in range(64)) + b"\r\n")

    def fault_torn_frame(self) -> None:
        """Half a frame, as when the reader resets mid-line."""
        self.write_raw(self._encode(self._frame("0000A0A0", SealStatus.INTACT, None, 50))[:12])

    def fault_bad_checksum(self) -> None:
        """A whole frame with a checksum that does not hold: must never become a reading."""
        frame = bytearray(self._encode(self._frame("0000BAD0", SealStatus.INTACT, None, 50)))
        if self.frame_format == "eseal-binary":
            frame[-3] ^= 0x5A  # the CRC's high byte
        else:
            star = frame.index(b"*")
            frame[star + 1:star + 3] = f"{int(frame[star + 1:star + 3], 16) ^ 0x5A:02X}".encode()
        self.write_raw(bytes(frame))

    def write_raw(self, data: bytes) -> None:
        """Send bytes as they are (garbage, torn frames, wrong checksums)."""
        if self._master is None:
            raise RuntimeError("e-seal reader simulator is not running")
        os.write(self._master, data)

    def _frame(self, seal_id: str, status: SealStatus | str, container: str | None, battery_pct: int | None,
               when: datetime | None = None) -> SealFrame:
        return SealFrame(
            reader_id=self.reader_id,
            seal_id=seal_id,
            status=SealStatus(status),
            battery_pct=battery_pct,
            container=container,
            timestamp=(when or datetime.now(UTC)).replace(microsecond=0),
        )

    def _encode(self, frame: SealFrame) -> bytes:
        if self.frame_format == "eseal-binary":
            return encode_binary_seal_frame(frame)
        return encode_seal_frame(frame)

    def cannot_carry(self, seal_id: str, status: SealStatus | str = SealStatus.INTACT, container: str | None = None,
                     battery_pct: int | None = 87) -> str | None:
        """Why this reader's frame format cannot carry the seal (the format's own words), or None when it can."""
        try:
            self._encode(self._frame(seal_id, status, container, battery_pct))
        except ValueError as exc:
            return f"the {self.frame_format} reader cannot send seal {seal_id!r}: {exc}"
        return None

    def present_seal(self, seal_id: str, status: SealStatus | str = SealStatus.INTACT,
                     container: str | None = None, battery_pct: int | None = 87,
                     when: datetime | None = None) -> bytes:
        """Send one seal frame, as the reader does when a seal comes into range."""
        data = self._encode(self._frame(seal_id, status, container, battery_pct, when))
        if self._master is None:
            return b""  # the cable is pulled: the reader's output goes nowhere
        self.write_raw(data)
        self.frames_sent += 1
        return data
