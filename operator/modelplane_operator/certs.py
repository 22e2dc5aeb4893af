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


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`name` as an IP address if it is one (127.0.0.1, ::1), else None: a host name may start with a digit."""
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _san_text(name: str) -> str:
    """How a SAN reads back from a certificate: IP addresses in their canonical form."""
    ip = _ip(name)
    return str(ip) if ip is not None else name


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
        names = [x509.IPAddress(ip) if (ip := _ip(s)) is not None else x509.DNSName(s) for s in sans]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def serving_pair(folder: Path, cn: str, sans: list[str]) -> bytes:
    """A CA and a serving certificate for `sans` in `folder` (ca.crt, tls.crt, tls.key), made once and reused while
    they cover the same names; returns the CA bundle (PEM) for a webhook configuration's caBundle."""
    folder.mkdir(parents=True, exist_ok=True)
    current = (folder / "tls.crt").read_bytes() if (folder / "tls.crt").exists() else None
    if needs_renewal(current, sans):
        write_bundle(folder, new_serving_bundle(cn, sans))
    return (folder / "ca.crt").read_bytes()


def write_bundle(folder: Path, bundle: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in bundle.items():
        (folder / name).write_bytes(data)
    (folder / "tls.key").chmod(0o600)


def needs_renewal(cert_pem_bytes: bytes | None, sans: list[str], min_days: int = 30) -> bool:
    """True when there is no certificate, it does not cover `sans`, or it expires within `min_days`."""
    if not cert_pem_bytes:
        return True
    try:
        cert = x509.load_pem_x509_certificate(cert_pem_bytes)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return True
    covered = {str(n.value) for n in names}
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    return not {_san_text(s) for s in sans} <= covered or left < datetime.timedelta(days=min_days)


def new_serving_bundle(cn: str, sans: list[str]) -> dict[str, bytes]:
    """ca.crt, tls.crt, tls.key for a fresh CA and serving certificate."""
    ca_key = new_key()
    ca = issue(f"{cn}-ca", ca_key, ca=True)
    key = new_key()
    return {"ca.crt": cert_pem(ca), "tls.crt": cert_pem(issue(cn, key, (ca, ca_key), sans=sans, server=True)),
            "tls.key": key_pem(key)}
