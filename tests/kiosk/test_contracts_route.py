"""The kiosk serves the device contracts, and shows why a device's message was refused (issue 28 point 6)."""

from __future__ import annotations

import time

import httpx
from jsonschema import Draft202012Validator

from devices.contracts import CONTRACT_NAMES, load_contract
from devices.protocols.scanner_json import ScanEvent
from devices.readings import ScanVerdict
from simulators.scanner import ScannerSimulator
from tests.kiosk.conftest import GateThread, login


def test_an_integrator_with_a_session_fetches_every_contract(gate: GateThread):
    with httpx.Client(base_url=gate.base, timeout=5) as client:
        assert client.get("/api/contracts/anpr-plate-read").status_code == 401  # like every data route
        login(client, "officer1")
        listing = client.get("/api/contracts").json()["contracts"]
        assert [c["name"] for c in listing] == list(CONTRACT_NAMES)
        for entry in listing:
            response = client.get(entry["href"])
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/schema+json")
            schema = response.json()
            Draft202012Validator.check_schema(schema)
            assert schema == load_contract(entry["name"])
        missing = client.get("/api/contracts/not-a-contract")
        assert missing.status_code == 404 and "not-a-contract" not in missing.text


def test_a_scan_naming_another_lane_shows_as_last_error_in_api_devices(gate: GateThread):
    rig = gate.gate.rigs["IMP-1"]
    broker = gate.gate.broker
    # A scanner whose certificate may publish here (e.g. an ACL written too widely) but names another lane.
    laptop = broker.allow("laptop", publish=(rig.scanner.topic,))
    forger = ScannerSimulator(broker.host, broker.port, rig.scanner.topic, "EXP-1", "laptop", tls=laptop)
    forger.start()
    try:
        forger.publish(ScanEvent.COMPLETED, "F-1", ["CSQU3054383"], ScanVerdict.CLEAR)
        with httpx.Client(base_url=gate.base, timeout=5) as client:
            login(client, "officer1")
            deadline = time.monotonic() + 5
            while True:
                scanner = next(d for d in client.get("/api/devices").json() if d["device_id"] == "IMP-1-xray")
                if scanner["frames_refused"] or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        assert scanner["frames_refused"] == 1
        assert "names lane 'EXP-1'" in scanner["last_error"] and "serves lane 'IMP-1'" in scanner["last_error"]
        assert scanner["connected"]  # a refused message is not a fault
    finally:
        forger.stop()
