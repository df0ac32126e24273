"""The gate's X.509 certificates: one gate CA, a server certificate per service, a client certificate per device.

The gate CA (EC P-256, kept on the node's machine) signs the broker's and central's TLS server
certificates and one client certificate per device, per node connection and per central client. A
client certificate's common name is its identity: Mosquitto takes it as the user name
(`use_identity_as_username`) and the ACL names what that identity may publish and read.

Revocation: `revoke()` adds a certificate's serial number to the CA's CRL (`crl.pem`), which the
broker reads (`crlfile`); re-issuing an identity (`issue()` again) is key rotation, and the caller
revokes the old certificate. `GatePki` names the files of one gate's PKI folder.

Only the `cryptography` package is used; files are PEM, private keys written mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825
CRL_DAYS = 825  # the broker refuses every client once its CRL has expired: refresh before


class PkiError(ValueError):
    """A certificate or key that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Issued:
    """Paths of one issued certificate and its private key."""

    cert: Path
    key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(directory: Path, name: str, *, days: int = CA_DAYS) -> Issued:
    """Create a CA (`ca.crt`, `ca.key`) in directory; refuses to overwrite an existing one."""
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() or key_path.exists():
        raise PkiError(f"{directory}: a CA is already there; remove ca.crt and ca.key to start over")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, key)
    _write_cert(cert_path, cert)
    return Issued(cert_path, key_path)


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA certificate and key in directory, or a PkiError naming the fix."""
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise PkiError(f"{directory}: no usable gate CA ({exc}); make one with `smartgate pki init`") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path}: not an EC key; make a new CA with `smartgate pki init`")
    return cert, key


def issue(ca_dir: Path, out_dir: Path, common_name: str, *, server: bool = False,
          hosts: tuple[str, ...] = (), days: int = LEAF_DAYS) -> Issued:
    """Issue `<out_dir>/<common_name>.crt|.key` signed by the CA in ca_dir (a new key each time).

    `server=True` makes a TLS server certificate for `hosts` (DNS names or IP addresses); otherwise a
    client certificate whose common name is the identity. Re-issuing replaces the files (key rotation).
    """
    ca_cert, ca_key = load_ca(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:
        names: list[x509.GeneralName] = []
        for host in hosts or ("localhost", "127.0.0.1", "::1"):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    issued = Issued(out_dir / f"{common_name}.crt", out_dir / f"{common_name}.key")
    _write_private(issued.key, key)
    _write_cert(issued.cert, cert)
    return issued


def common_name(cert_path: Path) -> str:
    """The common name (identity) of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def load_cert(cert_path: Path) -> x509.Certificate:
    """A PEM certificate, or a PkiError naming the file."""
    try:
        return x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"{cert_path}: not a readable PEM certificate ({exc})") from exc


def revoked_serials(ca_dir: Path) -> dict[int, dt.datetime]:
    """Serial number → revocation time of every certificate on the CA's CRL (empty when there is none)."""
    path = ca_dir / "crl.pem"
    if not path.exists():
        return {}
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except ValueError as exc:
        raise PkiError(f"{path}: not a readable CRL ({exc}); remove it and run `smartgate pki revoke` again") from exc
    return {entry.serial_number: entry.revocation_date_utc for entry in crl}


def write_crl(ca_dir: Path, revoked: dict[int, dt.datetime] | None = None, *, days: int = CRL_DAYS) -> Path:
    """(Re)write `<ca_dir>/crl.pem`, signed by the CA, listing `revoked` (default: what it lists now)."""
    ca_cert, ca_key = load_ca(ca_dir)
    entries = revoked_serials(ca_dir) if revoked is None else revoked
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=days)))
    for serial, when in sorted(entries.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    path = ca_dir / "crl.pem"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path)
    return path


def revoke(ca_dir: Path, cert_path: Path) -> int:
    """Put the certificate at cert_path on the CA's CRL; returns its serial number."""
    serial = load_cert(cert_path).serial_number
    entries = revoked_serials(ca_dir)
    entries.setdefault(serial, _now())
    write_crl(ca_dir, entries)
    return serial


@dataclass(frozen=True)
class GatePki:
    """The files of one gate's PKI folder (what `smartgate pki init` writes).

    `ca.crt`/`ca.key` the gate CA, `crl.pem` its revocation list, `broker/broker.crt|.key` the broker's
    server certificate, `clients/<identity>.crt|.key` one client certificate per identity.
    """

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def crl(self) -> Path:
        return self.dir / "crl.pem"

    @property
    def server(self) -> Issued:
        return Issued(self.dir / "broker" / "broker.crt", self.dir / "broker" / "broker.key")

    def client(self, identity: str) -> Issued:
        """Where the client certificate of an identity lives (whether or not it exists yet)."""
        if not identity or "/" in identity or identity.startswith("."):
            raise PkiError(f"{identity!r} cannot be an identity (a file name without '/')")
        return Issued(self.dir / "clients" / f"{identity}.crt", self.dir / "clients" / f"{identity}.key")

    def init(self, name: str, hosts: tuple[str, ...]) -> None:
        """A new CA with an empty CRL and the broker's server certificate for hosts."""
        make_ca(self.dir, name)
        write_crl(self.dir, {})
        issue(self.dir, self.dir / "broker", "broker", server=True, hosts=hosts)

    def enrol(self, identity: str) -> Issued:
        """Issue (or re-issue: key rotation) the client certificate of an identity; the old one is revoked."""
        target = self.client(identity)
        if target.cert.exists():
            revoke(self.dir, target.cert)
        else:
            write_crl(self.dir)  # re-signed: a fresh next-update date
        return issue(self.dir, target.cert.parent, identity)

    def revoke(self, identity: str) -> int:
        """Revoke the identity's certificate and delete its files; returns the serial number revoked."""
        target = self.client(identity)
        if not target.cert.exists():
            raise PkiError(f"{target.cert}: {identity} has no certificate to revoke")
        serial = revoke(self.dir, target.cert)
        target.cert.unlink()
        target.key.unlink(missing_ok=True)
        return serial
