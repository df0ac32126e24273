"""Ed25519 keys and signatures for the declaration feed (the `cryptography` package).

Central holds the private key (PEM, PKCS#8) and signs every feed batch; each site is configured with
central's public key, as PEM or as the 32 raw bytes in base64 (one line, easy to paste into a site
file). What is signed is the canonical JSON of the batch (sorted keys, no spaces, UTF-8), so the
signature does not depend on how a JSON library orders or spaces the text in transit.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyError_(ValueError):
    """A key that cannot be read; the message says what to do."""


def canonical_bytes(value: Any) -> bytes:
    """The bytes that are signed: canonical JSON (sorted keys, no spaces, UTF-8, no NaN)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def generate_keypair() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    private = Ed25519PrivateKey.generate()
    return private, private.public_key()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_b64(key: Ed25519PublicKey) -> str:
    """The 32 raw public-key bytes in base64 (what a site file may carry inline)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def write_keypair(private_path: Path, public_path: Path | None = None) -> Ed25519PublicKey:
    """Write a new private key (mode 0600) and, if asked, its public key PEM; return the public key."""
    private, public = generate_keypair()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(private_pem(private))
    private_path.chmod(0o600)
    if public_path is not None:
        public_path.write_bytes(public_pem(public))
    return public


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise KeyError_(f"{path}: not a PEM private key ({exc}); make one with `smartgate central keygen`") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"{path}: not an Ed25519 key; make one with `smartgate central keygen`")
    return key


def parse_public_key(text: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM text or base64 of the 32 raw bytes."""
    data = text.encode("ascii") if isinstance(text, str) else text
    data = data.strip()
    if data.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise KeyError_("the public key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise KeyError_("the public key is neither PEM nor base64") from exc
    if len(raw) != 32:
        raise KeyError_(f"a raw Ed25519 public key has 32 bytes, this one {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    return parse_public_key(Path(path).read_bytes())


def sign(key: Ed25519PrivateKey, body: Any) -> str:
    """Base64 Ed25519 signature of the canonical JSON of `body`."""
    return base64.b64encode(key.sign(canonical_bytes(body))).decode("ascii")


def verify(key: Ed25519PublicKey, body: Any, signature: str) -> bool:
    """True only when `signature` (base64) is central's signature of exactly this body."""
    try:
        key.verify(base64.b64decode(signature, validate=True), canonical_bytes(body))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True
