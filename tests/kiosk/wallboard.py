"""A four-lane gate for the wall-board tests: the Huu Nghi site with its two lanes doubled (IMP-2, EXP-2)."""

from __future__ import annotations

import copy
from pathlib import Path

from edge.config import LoadedSite, site_from_mapping
from edge.users import UserStore

WALL_PASSWORD = "wall-board-pass-1"
# Seal ids that are not English words: the test that looks for English left in the page reads them too.
WRONG_SEAL = "0077A1B2"  # 8 hex digits: the export lanes' binary readers take no other


def four_lane_site(loaded: LoadedSite) -> LoadedSite:
    """The site with IMP-2 and EXP-2 added (copies of IMP-1 and EXP-1 with their own devices and topics)."""
    return many_lane_site(loaded, 2)


def many_lane_site(loaded: LoadedSite, pairs: int, *, video: bool = False) -> LoadedSite:
    """The site's two lanes copied to IMP-1 .. IMP-<pairs> and EXP-1 .. EXP-<pairs>, each copy with its own
    devices, topics and ports.

    video=False leaves out the lanes' video cameras: the board does not show them, and many MJPEG
    streams would only cost the test machine CPU.
    """
    data = copy.deepcopy(loaded.site.model_dump())
    originals = []
    for lane in data["lanes"]:
        if not video:
            lane["devices"] = [d for d in lane["devices"] if d["kind"] != "camera"]
        originals.append(lane)
    lanes = []
    for number in range(1, pairs + 1):
        for lane in originals:
            twin = copy.deepcopy(lane)
            old, new = lane["id"], lane["id"].replace("-1", f"-{number}")
            twin["id"] = new
            twin["name"] = lane["name"].replace("1", str(number))
            twin["name_vi"] = lane["name_vi"].replace("1", str(number))
            for device in twin["devices"]:
                device["id"] = device["id"].replace(old, new)
                transport = device["transport"]
                if "topic" in transport:
                    transport["topic"] = transport["topic"].replace(old, new)
                if number == 1:
                    continue
                if transport["type"] in ("serial", "modbus_rtu"):  # one cable per device (the gate re-points them)
                    transport["port"] += f"-{number}"
                elif transport["type"] == "modbus_tcp":
                    transport["port"] += 100 * number
            lanes.append(twin)
    data["lanes"] = lanes
    return site_from_mapping(data, origin=str(loaded.path))


def add_wall_board(data_dir: Path, name: str = "wall-1") -> None:
    """A display user, as `smartgate users add wall-1 --role display` makes one."""
    with UserStore(data_dir / "users.sqlite") as users:
        users.add_user(name, WALL_PASSWORD, "display", "HUUNGHI", "Wall board 1")
