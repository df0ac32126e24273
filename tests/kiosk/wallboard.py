"""A four-lane gate for the wall-board tests: the Huu Nghi site with its two lanes doubled (IMP-2, EXP-2)."""

from __future__ import annotations

import copy
from pathlib import Path

from edge.config import LoadedSite, site_from_mapping
from edge.users import UserStore

WALL_PASSWORD = "wall-board-pass-1"
# Seal ids that are not English words: the test that looks for English left in the page reads them too.
WRONG_SEAL = "0077A1B2"  # 8 hex digits: the export lanes' binary readers take no other


def four_lane_site(loaded: LoadedSite, *, video: bool = False) -> LoadedSite:
    """The site with IMP-2 and EXP-2 added (copies of IMP-1 and EXP-1 with their own devices and topics).

    video=False leaves out the lanes' video cameras: the board does not show them, and four MJPEG
    streams would only cost the test machine CPU.
    """
    data = copy.deepcopy(loaded.site.model_dump())
    lanes = []
    for lane in data["lanes"]:
        if not video:
            lane["devices"] = [d for d in lane["devices"] if d["kind"] != "camera"]
        lanes.append(lane)
    for lane in list(lanes):
        twin = copy.deepcopy(lane)
        old, new = lane["id"], lane["id"].replace("-1", "-2")
        twin["id"] = new
        twin["name"] = lane["name"].replace("1", "2")
        twin["name_vi"] = lane["name_vi"].replace("1", "2")
        for device in twin["devices"]:
            device["id"] = device["id"].replace(old, new)
            transport = device["transport"]
            if "topic" in transport:
                transport["topic"] = transport["topic"].replace(old, new)
            if transport["type"] in ("serial", "modbus_rtu"):  # one cable per device (the gate re-points them)
                transport["port"] += "-2"
            elif transport["type"] == "modbus_tcp":
                transport["port"] += 100
        lanes.append(twin)
    order = {"IMP-1": 0, "EXP-1": 1, "IMP-2": 2, "EXP-2": 3}
    data["lanes"] = sorted(lanes, key=lambda lane: order[lane["id"]])
    return site_from_mapping(data, origin=str(loaded.path))


def add_wall_board(data_dir: Path, name: str = "wall-1") -> None:
    """A display user, as `smartgate users add wall-1 --role display` makes one."""
    with UserStore(data_dir / "users.sqlite") as users:
        users.add_user(name, WALL_PASSWORD, "display", "HUUNGHI", "Wall board 1")
