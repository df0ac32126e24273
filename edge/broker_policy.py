"""Who may do what on the gate's MQTT broker: identities, the ACL and the Mosquitto listener, from a site.

Every client connects over TLS with a client certificate from the gate CA (edge/pki.py); Mosquitto
takes the certificate's common name as the user name (`use_identity_as_username`) and as the client
id (`use_username_as_clientid`), so nobody can take over another client's session by naming its
client id. The ACL (deny unless listed) then says:

- a device (its site id) may only publish its own topic and `<topic>/status` (online/offline);
- only the node's device-bus identity (`mqtt.client_id`) may read the devices' topics;
- the node's uplink identity (`mqtt.node_client_id`, default `smartgate-<gate>-node`) publishes the
  gate's status and telemetry (sync/telemetry.py) and reads its feed notifications (sync/client.py);
- central (`smartgate-central`) reads every gate's status and telemetry and publishes notifications;
  its further workers (`smartgate-central-2` ...) read a share of the telemetry and publish notifications.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.config import MqttTransport, SiteConfig
from edge.pki import GatePki, Issued, PkiError

CENTRAL_IDENTITY = "smartgate-central"
CENTRAL_WORKERS_MAX = 8  # the ACL lets this many central workers in (`smartgate central serve --workers N`)


def central_identities(workers: int = CENTRAL_WORKERS_MAX) -> tuple[str, ...]:
    """Central's MQTT identities, one per worker process (Mosquitto makes the certificate's name the client id, so
    two workers cannot share one): worker 1 is `smartgate-central`, worker i is `smartgate-central-i`."""
    return (CENTRAL_IDENTITY, *(f"{CENTRAL_IDENTITY}-{i}" for i in range(2, workers + 1)))


class PolicyError(ValueError):
    """A site whose MQTT topics cannot be put in an ACL; the message names the device and the fix."""


@dataclass(frozen=True)
class DeviceGrant:
    """One MQTT device: its identity (the site's device id), lane, kind and the topics it publishes."""

    identity: str
    lane: str
    kind: str
    topic: str

    @property
    def topics(self) -> tuple[str, str]:
        return self.topic, f"{self.topic}/status"


@dataclass(frozen=True)
class BusIdentities:
    """Every identity a site's broker knows."""

    gate: str
    node_bus: str
    node_uplink: str
    central: str
    devices: tuple[DeviceGrant, ...]
    node_sparkplug: str | None = None  # the node's Sparkplug B connection, when the site publishes it

    def node_identities(self) -> tuple[str, ...]:
        """The node's own identities: device bus, uplink, and Sparkplug B where enabled."""
        return (self.node_bus, self.node_uplink, *((self.node_sparkplug,) if self.node_sparkplug else ()))

    def all(self) -> tuple[str, ...]:
        """Every identity: the node's, central's, then the devices'."""
        return (*self.node_identities(), self.central, *(d.identity for d in self.devices))

    def device(self, device_id: str) -> DeviceGrant | None:
        """The MQTT device with this id, or None."""
        return next((d for d in self.devices if d.identity == device_id), None)


def bus_identities(site: SiteConfig, central: str = CENTRAL_IDENTITY) -> BusIdentities:
    """The identities of a site's broker: the node's device bus and uplink, central, each MQTT device."""
    devices = []
    for lane in site.lanes:
        for device in lane.devices:
            if isinstance(device.transport, MqttTransport):
                topic = device.transport.topic
                if any(c in topic for c in "+#") or topic.startswith("$") or " " in topic:
                    raise PolicyError(f"device {device.id}: topic {topic!r} has a wildcard, a space or a leading $; "
                                      "give the device a plain topic in the site file")
                devices.append(DeviceGrant(device.id, lane.id, device.kind, topic))
    sparkplug = site.mqtt.sparkplug_id(site.gate) if site.mqtt.sparkplug else None
    return BusIdentities(site.gate, site.mqtt.client_id, site.mqtt.session_client_id(site.gate), central,
                         tuple(devices), sparkplug)


def uplink_topics(gate: str) -> dict[str, tuple[str, ...]]:
    """What the node's uplink publishes and reads (the topics of sync/telemetry.py and sync/client.py)."""
    base = f"smartgate/{gate}"
    return {"write": (f"{base}/status", f"{base}/telemetry/#"), "read": (f"{base}/feed/notify",)}


def acl_text(site: SiteConfig, central: str = CENTRAL_IDENTITY) -> str:
    """The Mosquitto ACL file for a site (anything not listed is denied)."""
    ids = bus_identities(site, central)
    lines = [f"# smartgate ACL for gate {site.gate}: written by `smartgate pki broker-config`; deny unless listed.",
             "# No lines before the first `user`: anonymous clients get nothing.", ""]
    for grant in ids.devices:
        lines += [f"# {grant.kind} of lane {grant.lane}: publishes its own topics only, reads nothing",
                  f"user {grant.identity}", *(f"topic write {t}" for t in grant.topics), ""]
    lines += ["# the node's device bus: the only reader of the devices' topics", f"user {ids.node_bus}"]
    for grant in ids.devices:
        lines += [f"topic read {t}" for t in grant.topics]
    uplink = uplink_topics(site.gate)
    lines += ["", "# the node's uplink: birth/death, telemetry; feed notifications from central",
              f"user {ids.node_uplink}", *(f"topic write {t}" for t in uplink["write"]),
              *(f"topic read {t}" for t in uplink["read"]), "",
              "# central: every gate's status and telemetry; feed notifications to the gates",
              f"user {ids.central}", "topic read smartgate/+/status", "topic read smartgate/+/telemetry/#",
              "topic write smartgate/+/feed/notify"]
    group = site.mqtt.sparkplug_group
    if ids.node_sparkplug:
        lines += [f"topic read spBv1.0/{group}/#", f"topic write spBv1.0/{group}/NCMD/+", "",
                  "# the node's Sparkplug B connection: its births, data and death; rebirth commands",
                  f"user {ids.node_sparkplug}", f"topic write spBv1.0/{group}/+/{site.gate}",
                  f"topic write spBv1.0/{group}/+/{site.gate}/+", f"topic read spBv1.0/{group}/NCMD/{site.gate}"]
    if central == CENTRAL_IDENTITY:
        # central's other workers take a share of the telemetry ($share/...) and publish notifications; birth/death
        # and Sparkplug B stay with worker 1 (sync/central/app.py, CentralMqtt)
        lines += ["", f"# central's workers 2..{CENTRAL_WORKERS_MAX}: a share of the telemetry; feed notifications"]
        for identity in central_identities()[1:]:
            lines += [f"user {identity}", "topic read smartgate/+/telemetry/#", "topic write smartgate/+/feed/notify"]
    return "\n".join(lines) + "\n"


def mosquitto_conf(*, port: int, bind: str, ca: Path, cert: Path, key: Path, crl: Path, acl: Path,
                   persistence_dir: Path | None = None, log_file: Path | None = None, user: str | None = None) -> str:
    """A mosquitto.conf (2.0) with one TLS listener that requires a gate-CA client certificate.

    Started as root, Mosquitto reads the listener's key and certificates as root, then drops to `user`
    (default `mosquitto`) before it reads the ACL, and re-reads ACL and CRL as that user on SIGHUP.
    """
    lines = [
        "# smartgate device bus: written by `smartgate pki broker-config` (Mosquitto 2.0).",
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {acl}",
    ]
    if user is not None:
        lines += [f"user {user}"]
    if persistence_dir is not None:  # the node's uplink and central keep persistent sessions
        lines += ["persistence true", f"persistence_location {persistence_dir}/"]
    else:
        lines += ["persistence false"]
    if log_file is not None:
        lines += [f"log_dest file {log_file}", "log_type error", "log_type warning", "log_type notice",
                  "log_type information"]
    lines += [
        "",
        f"listener {port} {bind}",
        f"cafile {ca}",
        f"certfile {cert}",
        f"keyfile {key}",
        f"crlfile {crl}",
        "tls_version tlsv1.2",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- the site's PKI (thin `smartgate pki` commands)


def default_pki_dir(data_dir: Path) -> Path:
    """Where `smartgate pki` keeps the gate's CA and certificates unless told otherwise."""
    return data_dir / "pki"


def init_site_pki(site: SiteConfig, pki_dir: Path, extra_hosts: tuple[str, ...] = ()) -> list[Issued]:
    """A new gate CA, its CRL, the broker's server certificate and the client certificates of the node
    (device bus, uplink, Sparkplug B) and central; returns the client certificates issued."""
    ids = bus_identities(site)
    pki = GatePki(pki_dir)
    hosts = tuple(dict.fromkeys((site.mqtt.host, "localhost", "127.0.0.1", "::1", *extra_hosts)))
    pki.init(f"smartgate gate CA {site.gate}", hosts)
    return [pki.enrol(identity) for identity in (*ids.node_identities(), ids.central)]


def enrol_identity(site: SiteConfig, pki_dir: Path, identity: str) -> Issued:
    """Issue (or rotate) the client certificate of a device of the site, of the node or of central.

    A device must be in the site file and speak MQTT; anything else is a PolicyError naming the fix.
    """
    ids = bus_identities(site)
    if identity not in ids.all() and identity not in central_identities():
        devices = {d.id: d for lane in site.lanes for d in lane.devices}
        if identity in devices:
            device = devices[identity]
            raise PolicyError(f"{identity} is a device of kind {device.kind} on {device.transport.type}: it does not "
                              "connect to the MQTT broker, so it needs no certificate (only MQTT devices are enrolled)")
        known = ", ".join(d.identity for d in ids.devices) or "none"
        raise PolicyError(f"no device {identity!r} in the site file for gate {site.gate} (its MQTT devices: {known}); "
                          "add the device to the site file first, with its id as the certificate's name")
    return GatePki(pki_dir).enrol(identity)


def revoke_identity(pki_dir: Path, identity: str) -> int:
    """Revoke an identity's certificate (the broker refuses it once it re-reads its CRL); returns the serial."""
    return GatePki(pki_dir).revoke(identity)


def write_broker_config(site: SiteConfig, pki_dir: Path, out_dir: Path, *, port: int | None = None,
                        bind: str = "0.0.0.0", persistence_dir: Path | None = None,
                        user: str | None = None) -> tuple[Path, Path]:
    """Write `mosquitto.conf` and `acl` for the site into out_dir; returns their paths.

    `user`: the account Mosquitto runs as when started by root (its default: `mosquitto`); that account
    must be able to read the broker's key, the CA, the CRL and the ACL, and write the persistence folder.
    """
    pki = GatePki(pki_dir)
    for needed in (pki.ca_cert, pki.crl, pki.server.cert, pki.server.key):
        if not needed.exists():
            raise PkiError(f"{needed} is missing; make the gate's PKI first with `smartgate pki init`")
    out_dir.mkdir(parents=True, exist_ok=True)
    persistence_dir = persistence_dir or out_dir / "data"
    persistence_dir.mkdir(parents=True, exist_ok=True)
    acl = out_dir / "acl"
    acl.write_text(acl_text(site))
    conf = out_dir / "mosquitto.conf"
    conf.write_text(mosquitto_conf(port=port or site.mqtt.port, bind=bind, ca=pki.ca_cert.resolve(),
                                   cert=pki.server.cert.resolve(), key=pki.server.key.resolve(),
                                   crl=pki.crl.resolve(), acl=acl.resolve(),
                                   persistence_dir=persistence_dir.resolve(), user=user))
    return conf, acl
