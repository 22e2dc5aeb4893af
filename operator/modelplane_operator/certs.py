"""Self-signed CA and serving certificates (cryptography only): for the admission webhook, and the local cluster.

The webhook's certificates rotate without a gap (see `decide`): a long-lived CA signs a short-lived serving
certificate, so renewing the serving certificate leaves the caBundle as it is; a new CA first joins the bundle beside
the old one, and signs the served certificate only once it has had time to reach every client (`Lifetimes.settle`).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
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



# Certificates start this long before they are made: a replica or API server whose clock is a little behind still
# takes them as valid.
BACKDATE = datetime.timedelta(minutes=5)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def issue(cn: str, key, issuer=None, *, ca=False, org=None, sans=(), server=False, days=365,
          now: datetime.datetime | None = None, not_after: datetime.datetime | None = None):
    """A certificate for `key`; self-signed when `issuer` is None, else `issuer` = (cert, key). Valid from `now`
    (less BACKDATE) until `not_after` (default: `days` from `now`)."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    now = now or utcnow()
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer[0].subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE)
               .not_valid_after(not_after or now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               # Key identifiers let a verifier pick the right CA when a bundle holds more than one.
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False)
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


def _uncovered(cert: x509.Certificate, sans: list[str]) -> list[str]:
    """The names of `sans` that `cert` does not cover (all of them when it has no SANs)."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return list(sans)
    covered = {str(n.value) for n in names}
    return [s for s in sans if _san_text(s) not in covered]


def needs_renewal(cert_pem_bytes: bytes | None, sans: list[str], min_days: int = 30) -> bool:
    """True when there is no certificate, it does not cover `sans`, or it expires within `min_days`."""
    if not cert_pem_bytes:
        return True
    try:
        cert = x509.load_pem_x509_certificate(cert_pem_bytes)
    except ValueError:
        return True
    left = cert.not_valid_after_utc - utcnow()
    return bool(_uncovered(cert, sans)) or left < datetime.timedelta(days=min_days)


# --- the webhook's certificates: a CA bundle, the CA key, and the serving certificate -----------------------------
#
# Kept as a Secret's data (or files of a folder) under these names: ca.crt is the bundle of every CA a served
# certificate may still be signed by (newest first; it is what goes into the webhook configuration's caBundle),
# ca.key the key of the one that signs now, tls.crt/tls.key the serving certificate. The operator's Secrets before
# this scheme had no ca.key (their CA could sign nothing more); they are taken over as they are.

SECRET_KEYS = ("ca.crt", "ca.key", "tls.crt", "tls.key")
SERVED_FILES = ("tls.crt", "tls.key", "ca.crt")  # what a webhook server reads; never the CA key

KEEP = "keep"                        # nothing to do
RENEW_LEAF = "renew-leaf"            # a new serving certificate from the current CA; the bundle stays
NEW_CA = "new-ca"                    # a new CA joins the bundle; the serving certificate stays for now
NEW_CA_AND_LEAF = "new-ca-and-leaf"  # both at once: only when no CA key is left and the served certificate is unusable
PRUNE = "prune"                      # drop expired (or repeated) certificates from the bundle


@dataclasses.dataclass(frozen=True)
class Lifetimes:
    """How long the webhook's certificates live, and when they are renewed."""
    ca: datetime.timedelta = datetime.timedelta(days=3650)
    leaf: datetime.timedelta = datetime.timedelta(days=365)
    # A new CA is made when the signing one has less than this left: the old one stays in the bundle till it expires.
    ca_renew_before: datetime.timedelta = datetime.timedelta(days=365)
    leaf_renew_before: datetime.timedelta = datetime.timedelta(days=90)
    # A new CA is in the bundle this long before it signs the served certificate, for every replica to have written
    # the bundle into the webhook configuration and the API server to have taken it up. More than a replica's check
    # period; a serving certificate that expires sooner than this is renewed at once.
    settle: datetime.timedelta = datetime.timedelta(hours=1)

    def __post_init__(self):
        if not (datetime.timedelta(0) <= self.settle < self.leaf_renew_before < self.leaf
                and self.ca_renew_before < self.ca):
            raise ValueError(f"certificate lifetimes out of order: {self}")


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str  # KEEP, RENEW_LEAF, NEW_CA, NEW_CA_AND_LEAF or PRUNE
    reason: str


def load_certs(pem: bytes | None) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle; none when it is missing or unreadable."""
    try:
        return x509.load_pem_x509_certificates(pem) if pem else []
    except ValueError:
        return []


def _load_key(pem: bytes | None):
    """A private key of the operator's own making (a check of an RSA key's numbers takes 80 ms; every check of the
    certificates loads two)."""
    try:
        return serialization.load_pem_private_key(pem, None, unsafe_skip_rsa_key_validation=True) if pem else None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _public(obj) -> bytes:
    return obj.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when `ca` signed `cert` (name and signature; not validity in time)."""
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _trusted(bundle: list[x509.Certificate], now: datetime.datetime) -> list[x509.Certificate]:
    """The bundle's CAs that have not expired, each once, in their order. A CA not yet valid by this clock stays (the
    replica that made it may run a little ahead)."""
    seen, kept = set(), []
    for cert in bundle:
        fingerprint = cert.fingerprint(hashes.SHA256())
        if _is_ca(cert) and cert.not_valid_after_utc > now and fingerprint not in seen:
            seen.add(fingerprint)
            kept.append(cert)
    return kept


def _signing(trusted: list[x509.Certificate], key) -> x509.Certificate | None:
    """The CA of the bundle whose key we hold."""
    if key is None:
        return None
    return next((ca for ca in trusted if _public(ca) == _public(key)), None)


def _days(delta: datetime.timedelta) -> str:
    return f"{delta.total_seconds() / 86400:.0f} days" if delta >= datetime.timedelta(days=2) else f"{delta}"


def _leaf_problem(data: dict[str, bytes], sans: list[str], trusted: list[x509.Certificate],
                  now: datetime.datetime, lifetimes: Lifetimes) -> str | None:
    """Why the serving certificate cannot be kept even for a while (None: it can)."""
    chain, key = load_certs(data.get("tls.crt")), _load_key(data.get("tls.key"))
    if not chain or key is None:
        return "no serving certificate" if not chain else "no key for the serving certificate"
    leaf = chain[0]
    if _public(leaf) != _public(key):
        return "the serving certificate does not match its key"
    if missing := _uncovered(leaf, sans):
        return f"the serving certificate does not cover {', '.join(missing)}"
    left = leaf.not_valid_after_utc - now
    if left <= lifetimes.settle:
        return "the serving certificate expired" if left <= datetime.timedelta(0) else \
            f"the serving certificate expires in {_days(left)}"
    if not any(issued_by(leaf, ca) for ca in trusted):
        return "the serving certificate is not signed by a CA of the bundle"
    return None


def decide(data: dict[str, bytes], sans: list[str], now: datetime.datetime,
           lifetimes: Lifetimes = Lifetimes()) -> Decision:
    """What to do with the webhook's certificates (a Secret's data) at `now`. Pure.

    Every step keeps one thing: a served certificate that clients verify with the bundle they already have, and a
    bundle that verifies the certificates replicas still serve. A serving certificate is renewed from the same CA
    (the bundle does not change). A CA near its end is followed by a new one in two steps: first it joins the bundle
    (NEW_CA; the serving certificate stays), then, `settle` later, it signs a new serving certificate; the old CA
    stays in the bundle until it expires. Only a serving certificate that cannot be served any more (expired, wrong
    names, missing) is replaced at once."""
    trusted = _trusted(load_certs(data.get("ca.crt")), now)
    ca_key = _load_key(data.get("ca.key"))
    signing = _signing(trusted, ca_key)
    problem = _leaf_problem(data, sans, trusted, now, lifetimes)
    if signing is None or signing.not_valid_after_utc - now < lifetimes.ca_renew_before:
        if signing is not None:
            why = f"the CA expires in {_days(signing.not_valid_after_utc - now)}"
        elif not trusted:
            why = "no CA"
        elif ca_key is None:
            why = "no CA key (an older operator's Secret)"
        else:
            why = "the CA key matches no CA of the bundle"
        if problem:
            return Decision(NEW_CA_AND_LEAF, f"{why}; {problem}")
        return Decision(NEW_CA, f"{why}; the new CA joins the bundle and signs the serving certificate "
                                f"{lifetimes.settle} later")
    if problem:
        return Decision(RENEW_LEAF, problem)
    leaf = load_certs(data["tls.crt"])[0]
    if not issued_by(leaf, signing):
        joined = signing.not_valid_before_utc + BACKDATE
        if now - joined >= lifetimes.settle:
            return Decision(RENEW_LEAF, f"the serving certificate is signed by the previous CA; the new one joined "
                                        f"the bundle {_days(now - joined)} ago")
        return Decision(KEEP, f"the new CA joined the bundle {_days(now - joined)} ago; it signs the serving "
                              f"certificate {lifetimes.settle} after")
    left = leaf.not_valid_after_utc - now
    if left < lifetimes.leaf_renew_before:
        return Decision(RENEW_LEAF, f"the serving certificate expires in {_days(left)}")
    if len(trusted) != len(load_certs(data.get("ca.crt"))):
        return Decision(PRUNE, "the bundle holds expired or repeated certificates")
    return Decision(KEEP, f"the serving certificate is good for {_days(left)}")


def rotate(data: dict[str, bytes], cn: str, sans: list[str], now: datetime.datetime | None = None,
           lifetimes: Lifetimes = Lifetimes()) -> tuple[Decision, dict[str, bytes]]:
    """`decide`, and the data after doing it (`data` itself when there is nothing to do). A new CA is named after its
    time of making (`cn`-ca-YYYYmmddHHMMSS), so that the CAs of one bundle never share a name."""
    now = now or utcnow()
    decision = decide(data, sans, now, lifetimes)
    if decision.action == KEEP:
        return decision, data
    trusted = _trusted(load_certs(data.get("ca.crt")), now)
    new = dict(data)
    if decision.action in (NEW_CA, NEW_CA_AND_LEAF):
        ca_key = new_key()
        ca = issue(f"{cn}-ca-{now:%Y%m%d%H%M%S}", ca_key, ca=True, now=now, not_after=now + lifetimes.ca)
        trusted = [ca, *trusted]
        new["ca.key"] = key_pem(ca_key)
    else:
        ca_key = _load_key(data["ca.key"])
        ca = _signing(trusted, ca_key)
    if decision.action in (RENEW_LEAF, NEW_CA_AND_LEAF):
        key = new_key()
        leaf = issue(cn, key, (ca, ca_key), sans=sans, server=True, now=now,
                     not_after=min(now + lifetimes.leaf, ca.not_valid_after_utc))
        new["tls.crt"], new["tls.key"] = cert_pem(leaf), key_pem(key)
    new["ca.crt"] = b"".join(cert_pem(c) for c in trusted)
    return decision, new


# --- files ---------------------------------------------------------------------------------------------------------

def read_files(folder: Path, names=SECRET_KEYS) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}


def write_files(folder: Path, data: dict[str, bytes], names=SERVED_FILES) -> None:
    """Write `names` of `data` into `folder`, each replaced whole (a reader sees the old file or the new one); keys are
    readable by the owner alone."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name not in data:
            continue
        tmp = folder / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600 if name.endswith(".key") else 0o644)
            f.write(data[name])
        os.replace(tmp, folder / name)


def keep_in_folder(folder: Path, cn: str, sans: list[str], now: datetime.datetime | None = None,
                   lifetimes: Lifetimes = Lifetimes()) -> tuple[Decision, dict[str, bytes]]:
    """The webhook's certificates kept in `folder` itself (a local run without a Secret): renewed there when due."""
    decision, data = rotate(read_files(folder), cn, sans, now, lifetimes)
    if decision.action != KEEP:
        write_files(folder, data, SECRET_KEYS)
    return decision, data


def serving_pair(folder: Path, cn: str, sans: list[str]) -> bytes:
    """A CA and a serving certificate for `sans` in `folder` (ca.crt, ca.key, tls.crt, tls.key), made once and renewed
    when due; returns the CA bundle (PEM) for a webhook configuration's caBundle."""
    return keep_in_folder(folder, cn, sans)[1]["ca.crt"]
