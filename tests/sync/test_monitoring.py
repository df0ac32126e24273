"""Central monitoring sees a node go offline (its MQTT last will, after a SIGKILL) and come back."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from sync.central.server import CentralServer
from tests.sync.helpers import TOKENS

NODE = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sync.telemetry import telemetry_topics
topic = telemetry_topics("HN")["status"]
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="smartgate-HN", clean_session=True)
c.will_set(topic, "offline", qos=1, retain=True)  # as TelemetryPublisher.prepare does
c.connect("127.0.0.1", int(sys.argv[1]), keepalive=10)
c.loop_start()
c.publish(topic, "online", qos=1, retain=True)
time.sleep(600)
"""


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.timeout(60)
def test_last_will_marks_the_node_offline_and_back(tmp_path, broker, keypair):
    central = CentralServer(f"sqlite:///{tmp_path / 'c.sqlite'}", keypair[0], mqtt=("127.0.0.1", broker.port),
                            tokens=TOKENS).start()

    def online():
        gates = {g["gate"]: g for g in central.store.gates()}
        return gates.get("HN", {}).get("online")

    try:
        node = subprocess.Popen([sys.executable, "-c", NODE, str(broker.port)])
        _wait(lambda: online() is True, 15, "online")
        node.send_signal(signal.SIGKILL)
        node.wait()
        _wait(lambda: online() is False, 15, "offline (last will)")
        node = subprocess.Popen([sys.executable, "-c", NODE, str(broker.port)])
        _wait(lambda: online() is True, 15, "back online")
        node.kill()
        node.wait()
        states = [state for _, gate, state in central.mqtt.events if gate == "HN"]
        assert "offline" in states and states[-1] in ("online", "offline")
    finally:
        central.stop()


@pytest.mark.timeout(120)
def test_sync_bench_quick_reports_every_figure():
    from benchmarks.sync_bench import run_sync_bench

    figures = run_sync_bench(quick=True)
    for key in ("enqueue_events_per_s_one_commit_each", "drain_s", "apply_declarations_per_s_new",
                "link_up_to_revocation_s_median"):
        assert figures[key] > 0, key
    assert figures["central_events"] == figures["drain_events"]
