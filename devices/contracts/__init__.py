"""The published device contracts: one JSON Schema per MQTT payload a third-party device sends the node.

`anpr-plate-read` (a camera's plate result), `scanner-result` (a container scanner's scan event) and
`device-status` (`online` / `offline` on `<topic>/status`). They ship in the wheel beside this
module, the kiosk serves them at `/api/contracts/{name}`, and tests/test_contracts.py keeps them
in step with the codecs (devices/protocols/anpr_json.py, scanner_json.py).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

CONTRACT_NAMES = ("anpr-plate-read", "scanner-result", "device-status")


@cache
def _text(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")


def load_contract(name: str) -> dict[str, Any]:
    """Return the JSON Schema named `name` (one of CONTRACT_NAMES) as a new dict; KeyError for any other name."""
    if name not in CONTRACT_NAMES:
        raise KeyError(name)
    return json.loads(_text(name))
