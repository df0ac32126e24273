"""The wall board over HTTP: a display log-in that never idles out and never acts, recent trucks that say
what happened and who did it, device faults in plain words, look-up by the end of a plate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from edge.kiosk.board import fault_code, final_result, needs_officer, plate_query
from edge.users import AuthSettings, Role, UserStore
from tests.conftest import wait_until
from tests.kiosk.conftest import GateThread, login
from tests.kiosk.wallboard import WALL_PASSWORD, add_wall_board

ACTIONS = ("release", "refuse", "inspect", "manual_open", "manual_close", "acknowledge_alarm")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_display_session_never_ends_for_want_of_input(tmp_path: Path):
    clock = Clock()
    settings = AuthSettings(idle_timeout_s=600, absolute_timeout_s=3600, display_timeout_s=30 * 86400)
    with UserStore(tmp_path / "users.sqlite", settings, clock=clock) as store:
        wall = store.add_user("wall-1", WALL_PASSWORD, "display", "HUUNGHI", "Wall board 1")
        officer = store.add_user("officer1", "officer-pass-1", "officer", "HUUNGHI")
        assert wall.role == Role.DISPLAY and not wall.may_act_at("HUUNGHI") and officer.may_act_at("HUUNGHI")
        wall_token, _ = store.create_session(wall)
        officer_token, _ = store.create_session(officer)
        clock.now += 2 * 86400  # two days on the wall, nobody touching it
        assert store.session(officer_token) is None  # an officer's session ends after 10 idle minutes
        assert store.session(wall_token) is not None
        store.create_session(officer)  # a log-in sweeps ended sessions: the wall board's is not one of them
        assert store.session(wall_token) is not None
        clock.now += 29 * 86400
        assert store.session(wall_token) is None  # display_timeout_s after log-in it ends too
        # Disabling the wall board's user ends its session at once.
        token, _ = store.create_session(wall)
        store.set_disabled("wall-1", True)
        assert store.session(token) is None


def test_a_wall_board_sees_everything_and_every_action_is_refused(gate: GateThread):
    add_wall_board(gate.workdir / "node")
    gate.present("IMP-1", "29C-123.45", "SEAL-WRONG")
    gate.call(wait_until(lambda: gate.gate.node.lanes["IMP-1"].machine.tx is not None
                         and gate.gate.node.lanes["IMP-1"].machine.tx.decision is not None, 15, "a hold"))
    with httpx.Client(base_url=gate.base, timeout=10) as client:
        csrf = login(client, "wall-1", WALL_PASSWORD)["csrf"]
        session = client.get("/api/session").json()
        assert session["display"] is True and session["may_act"] is False and session["idle_timeout_s"] is None
        assert client.cookies.get("sg_session")
        lanes = {lane["lane"]: lane for lane in client.get("/api/lanes").json()}
        assert lanes["IMP-1"]["needs_officer"] is True and lanes["IMP-1"]["waiting_since"] > 0
        assert lanes["IMP-1"]["name_vi"] == "Làn nhập 1 (Trung Quốc → Việt Nam)"
        assert client.get("/api/status").json()["gate_name_vi"] == "Cửa khẩu quốc tế Hữu Nghị"
        for action in ACTIONS:
            answer = client.post("/api/lanes/IMP-1/actions", json={"action": action, "reason": "from the wall"},
                                 headers={"x-csrf-token": csrf})
            assert answer.status_code == 403 and answer.json()["detail"]["code"] == "officer_required", action
        assert client.post("/api/users", json={"username": "x1", "password": "password-1", "role": "admin"},
                           headers={"x-csrf-token": csrf}).status_code == 403
        assert client.post("/api/users/officer1/disable", headers={"x-csrf-token": csrf}).status_code == 403
    assert not gate.gate.rigs["IMP-1"].plc.boom_open
    assert not gate.gate.node.journal.entries(lane="IMP-1", kinds=["officer_action"])
    # An officer acts in their own session meanwhile.
    with httpx.Client(base_url=gate.base, timeout=10) as client:
        csrf = login(client, "officer1")["csrf"]
        ok = client.post("/api/lanes/IMP-1/actions", json={"action": "release", "reason": "papers seen"},
                         headers={"x-csrf-token": csrf})
        assert ok.status_code == 200 and ok.json()["lane"]["needs_officer"] is False


def test_an_admin_adds_a_wall_board_on_the_page_or_with_the_command(gate: GateThread, tmp_path: Path):
    with httpx.Client(base_url=gate.base, timeout=10) as client:
        csrf = login(client, "admin1")["csrf"]
        added = client.post("/api/users", json={"username": "wall-2", "password": "wall-pass-22", "role": "display"},
                            headers={"x-csrf-token": csrf})
        assert added.status_code == 201 and added.json()["role"] == "display"
    site = Path(__file__).resolve().parents[2] / "firmware_configs" / "sites" / "huu-nghi.yaml"
    done = subprocess.run([sys.executable, "-m", "edge.cli", "users", "add", "wall-3", "--role", "display",
                           "--password-stdin", "--site", str(site), "--data-dir", str(tmp_path / "wall-node")],
                          input="wall-pass-33\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "added display wall-3 at gate HUUNGHI" in done.stdout


def _drive_through(gate: GateThread, lane: str) -> None:
    """The released truck drives under the open boom and leaves; the boom closes behind it."""
    node, plc = gate.gate.node, gate.gate.rigs[lane].plc
    machine = node.lanes[lane].machine
    gate.call(wait_until(lambda: machine.boom_open, 15, "the boom open"))
    for loop, occupied in (("safety", True), ("arrival", False), ("safety", False)):
        gate.run(plc.set_loop, loop, occupied)
        gate.call(wait_until(lambda loop=loop, occupied=occupied: machine.loops[loop] == occupied, 10, loop))
    gate.call(wait_until(lambda: node.journal.entries(lane=lane, kinds=["tx_closed"]) != [], 20, "the truck gone"))


def test_recent_trucks_say_who_released_them_and_a_manual_opening_is_no_truck(gate: GateThread):
    gate.present("IMP-1", "29C-123.45", "SEAL-WRONG")  # held: a seal not on the declaration
    machine = gate.gate.node.lanes["IMP-1"].machine
    gate.call(wait_until(lambda: machine.tx is not None and machine.tx.decision is not None, 15, "a hold"))
    with httpx.Client(base_url=gate.base, timeout=10) as client:
        csrf = login(client, "super1")["csrf"]
        assert client.post("/api/lanes/IMP-1/actions", json={"action": "release", "reason": "seal replaced"},
                           headers={"x-csrf-token": csrf}).status_code == 200
        _drive_through(gate, "IMP-1")
        gate.call(wait_until(lambda: not machine.boom_open and machine.tx is None, 20, "the lane idle"))
        # A supervisor opens the empty lane by hand (an ambulance), and it goes through.
        assert client.post("/api/lanes/EXP-1/actions", json={"action": "manual_open", "reason": "ambulance"},
                           headers={"x-csrf-token": csrf}).status_code == 200
        _drive_through(gate, "EXP-1")
        recent = {row["lane"]: row for row in client.get("/api/transactions").json()}
    assert recent["IMP-1"]["outcome"] == "hold" and recent["IMP-1"]["result"] == "passed"
    assert recent["IMP-1"]["final"] == {"code": "released_by", "by": "super1", "by_name": "Tran Thi Binh"}
    assert recent["EXP-1"]["final"]["code"] == "manual_open" and recent["EXP-1"]["final"]["by"] == "super1"


@pytest.mark.parametrize(("closed", "actions", "code"), [
    ({"result": "passed", "released_by": "auto", "outcome": "release", "plates": ["29C12345"]}, [], "released_auto"),
    ({"result": "passed", "released_by": "officer1", "outcome": "hold", "plates": ["29C12345"]},
     [{"action": "release", "officer": "officer1"}], "released_by"),
    ({"result": "left_lane", "released_by": None, "outcome": "hold", "plates": ["29C12345"]},
     [{"action": "refuse", "officer": "officer1"}], "refused_by"),
    ({"result": "left_lane", "released_by": None, "outcome": "hold", "plates": ["29C12345"]},
     [{"action": "inspect", "officer": "officer1"}], "inspect_by"),
    ({"result": "left_lane", "released_by": None, "outcome": "refuse", "plates": ["51D99999"]}, [], "refused_rules"),
    ({"result": "left_lane", "released_by": None, "outcome": "hold", "plates": ["29C12345"]}, [], "held"),
    ({"result": "unauthorised_passage", "released_by": None, "outcome": "hold", "plates": ["29C12345"]}, [],
     "unauthorised_passage"),
    ({"result": "passed", "released_by": "super1", "outcome": None, "plates": []},
     [{"action": "manual_open", "officer": "super1"}], "manual_open"),
])
def test_the_final_result_of_a_truck(closed: dict, actions: list, code: str):
    assert final_result(closed, actions)["code"] == code


@pytest.mark.parametrize(("error", "code"), [
    ("read from /tmp/x/tty/IMP-1-eseal failed: device reports readiness to read but returned no data "
     "(device disconnected or multiple access on port?)", "no_data"),
    ("could not open port /dev/ttyUSB0: [Errno 2] No such file or directory: '/dev/ttyUSB0'", "cannot_open"),
    ("[Errno 111] Connection refused", "unreachable"),
    ("read_coils: timed out after 1.0 s", "timeout"),
    ("read_holding_registers: exception reply ExceptionResponse(131, 4)", "device_error"),
    ("cannot open video source rtsp://127.0.0.1:8554/imp-1-cam", "no_video"),
    ("frame checksum mismatch", "bad_data"),
    ("something nobody foresaw", "unknown"),
    (None, "unknown"),
])
def test_device_faults_have_a_plain_kind(error: str | None, code: str):
    assert fault_code(error) == code


def test_a_truck_waits_for_an_officer_only_until_someone_decides():
    held = {"state": "DECIDED", "transaction": {"decision": {"outcome": "hold"}, "plates": [{"plate": "29C12345"}],
                                                 "officer_actions": [], "barrier_open_commanded": False}}
    assert needs_officer(held)
    held["transaction"]["officer_actions"] = [{"action": "inspect", "officer": "officer1"}]
    assert not needs_officer(held)
    reading = {"state": "COLLECTING", "transaction": {"decision": None, "plates": [], "officer_actions": []}}
    assert not needs_officer(reading) and not needs_officer({"state": "IDLE", "transaction": None})


def test_look_up_by_the_end_of_a_plate(gate: GateThread):
    assert plate_query("123.45") == "12345" and plate_query("3.45") is None
    with httpx.Client(base_url=gate.base, timeout=10) as client:
        login(client, "officer1")

        def numbers(q: str) -> list[str]:
            answer = client.get("/api/declarations", params={"q": q})
            assert answer.status_code == 200
            return [d["number"] for d in answer.json()["results"]]

        assert numbers("123.45") == ["105000000888"]  # the last five characters, as written on the plate
        assert numbers("2345") == ["105000000888"]
        assert numbers("999.99") == ["105000000999"]
        assert numbers("29c 123 45") == ["105000000888"]  # the whole plate, however written
        assert numbers("345") == []  # three characters match too many plates to be useful
        assert numbers("5%") == [] and numbers("1_45") == []  # LIKE's wildcards are plain characters


def test_gate_alarms_are_the_journal_s_alarms_of_no_lane_read_forward(tmp_path: Path):
    from edge.journal import Journal
    from edge.kiosk.board import GateAlarms

    journal = Journal.open(tmp_path / "journal.sqlite")
    try:
        journal.append("alarm", {"code": "OUTBOX_FULL", "text": "outbox full"})  # before the kiosk started
        alarms = GateAlarms(journal)
        journal.append("alarm", {"code": "TAILGATING", "text": "second vehicle"}, lane="IMP-1")
        journal.append("reading", {"plate": "29C12345"}, lane="IMP-1")
        assert [a["code"] for a in alarms.poll()] == ["OUTBOX_FULL"]
        for code in ("FEED_BAD_SIGNATURE", "CENTRAL_AUTH_REFUSED"):
            journal.append("alarm", {"code": code, "text": "..."})
        assert [a["code"] for a in alarms.poll()] == ["CENTRAL_AUTH_REFUSED", "FEED_BAD_SIGNATURE", "OUTBOX_FULL"]
        assert len(alarms.poll()) == 3  # nothing new: nothing read twice
    finally:
        journal.close()


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_every_fault_final_result_and_sync_alarm_has_words(lang: str):
    import re

    from edge.kiosk import i18n
    from edge.kiosk.board import FAULT_PATTERNS, FINAL_CODES

    messages = i18n.catalogue(lang)
    keys = [f"fault.{code}" for code, _ in FAULT_PATTERNS] + ["fault.unknown", "alarm.unknown"]
    keys += [f"final.{code}" for code in FINAL_CODES]
    sync = Path(__file__).resolve().parents[2] / "sync"
    raised = set()
    for source in [*sync.glob("*.py")]:  # every alarm the node's sync side raises, by its code
        raised |= set(re.findall(r'(?:FeedRejected|_alarm|on_alarm)\(\s*"([A-Z_]+)"', source.read_text()))
    assert {"CENTRAL_AUTH_REFUSED", "OUTBOX_FULL", "FEED_BAD_SIGNATURE"} <= raised
    keys += [f"alarm.{code}" for code in raised]
    missing = [key for key in keys if key not in messages]
    assert not missing, f"add to edge/kiosk/i18n/{lang}.json: {missing}"
