"""Self-signed CA and serving certificates (cryptography only): for the admission webhook, and the local cluster."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def cert_pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def issue(cn: str, key, issuer=None, *, ca=False, org=None, sans=(), server=False, days=365):
    """A certificate for `key`; self-signed when `issuer` is None, else `issuer` = (cert, key)."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer[0].subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        names = [x509.IPAddress(ipaddress.ip_address(s)) if s[0].isdigit() else x509.DNSName(s) for s in sans]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def serving_pair(folder: Path, cn: str, sans: list[str]) -> bytes:
    """A CA and a serving certificate for `sans` in `folder` (ca.crt, tls.crt, tls.key), made once and reused while
    they cover the same names; returns the CA bundle (PEM) for a webhook configuration's caBundle."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "sans"
    if not (stamp.exists() and stamp.read_text() == ",".join(sans) and (folder / "tls.key").exists()):
        ca_key = new_key()
        ca = issue(f"{cn}-ca", ca_key, ca=True)
        key = new_key()
        cert = issue(cn, key, (ca, ca_key), sans=sans, server=True)
        (folder / "ca.crt").write_bytes(cert_pem(ca))
        (folder / "tls.crt").write_bytes(cert_pem(cert))
        (folder / "tls.key").write_bytes(key_pem(key))
        (folder / "tls.key").chmod(0o600)
        stamp.write_text(",".join(sans))
    return (folder / "ca.crt").read_bytes()
