"""`smartgate pki`: the gate CA, one certificate per identity from the site file, revocation, and a
Mosquitto config that real Mosquitto runs with."""

from __future__ import annotations

import getpass
import socket
import stat
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from cryptography import x509

from devices.transports.mqtt import MqttTls
from edge.cli import DEFAULT_SITE, main
from edge.pki import common_name, revoked_serials
from simulators.broker import find_mosquitto, free_port
from tests.security.test_device_bus import _try_connect


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEFAULT_SITE.read_text(encoding="utf-8"))
    data["data_dir"] = str(tmp_path / "data")
    data["mqtt"]["port"] = free_port()
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _pki(site_file: Path, *args: str) -> int:
    return main(["pki", *args, "--site", str(site_file)])


def test_init_makes_the_ca_the_broker_and_the_nodes_two_identities_with_private_keys_0600(site_file, tmp_path):
    assert _pki(site_file, "init") == 0
    pki = tmp_path / "data" / "pki"
    for identity in ("smartgate-huunghi-edge", "smartgate-HUUNGHI-node", "smartgate-central"):
        assert common_name(pki / "clients" / f"{identity}.crt") == identity
        assert stat.S_IMODE((pki / "clients" / f"{identity}.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((pki / "ca.key").stat().st_mode) == 0o600
    assert revoked_serials(pki) == {}
    assert _pki(site_file, "init") == 1  # never overwrites a gate CA


def test_enrol_takes_only_the_sites_mqtt_devices(site_file, tmp_path, capsys):
    assert _pki(site_file, "init") == 0
    assert _pki(site_file, "enrol", "IMP-1-anpr") == 0
    assert common_name(tmp_path / "data" / "pki" / "clients" / "IMP-1-anpr.crt") == "IMP-1-anpr"
    capsys.readouterr()
    assert _pki(site_file, "enrol", "LAPTOP-1") == 1
    err = capsys.readouterr().err
    assert "no device 'LAPTOP-1' in the site file" in err and "IMP-1-anpr, IMP-1-xray, EXP-1-anpr" in err
    assert _pki(site_file, "enrol", "IMP-1-eseal") == 1
    assert "needs no certificate" in capsys.readouterr().err
    assert not (tmp_path / "data" / "pki" / "clients" / "LAPTOP-1.crt").exists()


def test_re_enrolling_rotates_the_key_and_revokes_the_old_certificate(site_file, tmp_path):
    assert _pki(site_file, "init") == 0
    assert _pki(site_file, "enrol", "IMP-1-xray") == 0
    cert = tmp_path / "data" / "pki" / "clients" / "IMP-1-xray.crt"
    old = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    assert _pki(site_file, "enrol", "IMP-1-xray") == 0
    assert x509.load_pem_x509_certificate(cert.read_bytes()).serial_number != old
    assert set(revoked_serials(tmp_path / "data" / "pki")) == {old}
    assert _pki(site_file, "revoke", "IMP-1-xray") == 0
    assert len(revoked_serials(tmp_path / "data" / "pki")) == 2 and not cert.exists()


def test_the_broker_config_it_writes_runs_in_mosquitto_and_refuses_a_revoked_camera(site_file, tmp_path):
    assert _pki(site_file, "init") == 0
    assert _pki(site_file, "enrol", "--all") == 0
    assert _pki(site_file, "broker-config", "--bind", "127.0.0.1", "--user", getpass.getuser()) == 0
    pki = tmp_path / "data" / "pki"
    conf = (pki / "mosquitto" / "mosquitto.conf").read_text()
    for line in ("allow_anonymous false", "require_certificate true", "use_identity_as_username true",
                 "use_username_as_clientid true", f"crlfile {pki.resolve() / 'crl.pem'}"):
        assert line in conf
    acl = (pki / "mosquitto" / "acl").read_text()
    assert "user IMP-1-anpr\ntopic write gate/HUUNGHI/IMP-1/anpr/front\n" in acl
    port = yaml.safe_load(site_file.read_text())["mqtt"]["port"]
    camera = MqttTls(pki / "ca.crt", tmp_path / "camera.crt", tmp_path / "camera.key")
    camera.cert.write_bytes((pki / "clients" / "IMP-1-anpr.crt").read_bytes())
    camera.key.write_bytes((pki / "clients" / "IMP-1-anpr.key").read_bytes())
    broker = subprocess.Popen([find_mosquitto(), "-c", str(pki / "mosquitto" / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert broker.poll() is None and time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)
        endpoint = SimpleNamespace(host="127.0.0.1", port=port)
        assert _try_connect(endpoint, camera) == "connected"
        assert _pki(site_file, "revoke", "IMP-1-anpr") == 0
        broker.send_signal(1)  # SIGHUP: Mosquitto re-reads the CRL
        deadline = time.monotonic() + 10
        while _try_connect(endpoint, camera) == "connected":
            assert time.monotonic() < deadline, "the revoked camera still connects after the reload"
    finally:
        broker.terminate()
        broker.wait(5)


def test_tls_files_in_the_site_are_relative_to_the_site_file_and_checked_at_start(site_file, tmp_path):
    from edge.config import load_site, mqtt_tls_problems

    data = yaml.safe_load(site_file.read_text())
    data["mqtt"]["tls"] = {"dir": "keys", "cert": "/nowhere/bus.crt"}
    site_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    loaded = load_site(site_file)
    problems = {p.key: p for p in mqtt_tls_problems(loaded, tmp_path / "data")}
    assert str(tmp_path / "keys" / "ca.crt") in problems["mqtt.tls.ca"].message
    assert "/nowhere/bus.crt" in problems["mqtt.tls.cert"].message
    assert str(tmp_path / "keys" / "clients" / "smartgate-HUUNGHI-node.key") in problems["mqtt.tls.uplink_key"].message
    assert "smartgate pki init" in problems["mqtt.tls.ca"].fix and "insecure: true" in problems["mqtt.tls.ca"].fix
    data["mqtt"]["insecure"] = True
    site_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert mqtt_tls_problems(load_site(site_file), tmp_path / "data") == []


def test_the_security_bench_times_both_brokers_in_one_run():
    from benchmarks.security_bench import run_security_bench

    figures = run_security_bench(trucks=20, connects=2, messages=20)
    for mode in ("plaintext", "tls"):
        assert figures["reading_to_decision_ms"][mode]["n"] == 10
        assert figures["delivery_ms"][mode]["n"] == 10 and figures["bus_ms"][mode]["n"] == 10
        assert figures["connect_ms"][mode]["n"] == 2
    assert figures["added_ms"]["p99"] is not None
