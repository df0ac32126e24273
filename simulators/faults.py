"""Faults a tester can inject into any simulated device, on a timeline or by hand.

Every simulator offers `fault_<name>()` for the faults it can have, and `recover_<name>()` for
those that last (a disconnect lasts until recovered; garbage is a one-off burst). The scenario
runner and `smartgate simulate` both go through `inject_fault`, so a fault means the same thing
everywhere.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FaultName = Literal["disconnect", "garbage", "torn_frame", "bad_checksum", "slow", "exception_replies",
                    "restart"]

FAULT_HELP = {
    "disconnect": "device goes away (cable pulled, server down, camera offline) until recovered",
    "garbage": "a burst of random bytes / malformed messages on the line",
    "torn_frame": "half a frame, then nothing (the next frame must still be read)",
    "bad_checksum": "a complete frame whose checksum does not hold",
    "slow": "answers late (longer than the node's timeout) until recovered",
    "exception_replies": "Modbus exception replies to every request until recovered",
    "restart": "the MQTT broker stops and starts again after duration_s",
}


class FaultSpec(BaseModel):
    """At `at_s` seconds, `device` suffers `fault` for `duration_s` (lasting faults only)."""

    model_config = ConfigDict(extra="forbid")

    at_s: float = Field(ge=0)
    device: str
    fault: FaultName
    duration_s: float = Field(default=2.0, ge=0)


def supported_faults(simulator: Any) -> list[str]:
    """The fault names a simulator offers."""
    return sorted(name.removeprefix("fault_") for name in dir(simulator) if name.startswith("fault_"))


async def _call(simulator: Any, method: str) -> None:
    result = getattr(simulator, method)()
    if inspect.isawaitable(result):
        await result


def is_lasting(simulator: Any, fault: str) -> bool:
    """True when the fault lasts until recovered (a disconnect), False for a one-off (garbage)."""
    return hasattr(simulator, f"recover_{fault}")


async def inject_fault(simulator: Any, fault: str, duration_s: float,
                       log: Callable[[str], None] | None = None, name: str = "") -> None:
    """Apply a fault, and recover from it after duration_s when it is a lasting one.

    `log` (with the device's `name`) is told when the fault starts and when it ends.
    """
    if not hasattr(simulator, f"fault_{fault}"):
        raise ValueError(f"{type(simulator).__name__} cannot simulate '{fault}': "
                         f"it offers {', '.join(supported_faults(simulator))}")
    who = f"{name}: " if name else ""
    lasting = is_lasting(simulator, fault)
    if log:
        log(f"{who}fault {fault} starts" + (f" for {duration_s:g} s" if lasting else " (one-off)"))
    await _call(simulator, f"fault_{fault}")
    if lasting:
        await asyncio.sleep(duration_s)
        await _call(simulator, f"recover_{fault}")
        if log:
            log(f"{who}fault {fault} ended: the device is back")
