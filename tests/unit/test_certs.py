"""Serving certificates: only real IP addresses become IP SANs; every other name, digits first or not, is a DNS name.
The webhook's certificates rotate without a moment where a replica serves what the caBundle does not trust."""

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelplane_operator import certs
from modelplane_operator.certs import (
    KEEP, NEW_CA, NEW_CA_AND_LEAF, PRUNE, RENEW_LEAF, Lifetimes, cert_pem, decide, issue, issued_by, key_pem, load_certs,
    needs_renewal, new_key, rotate)


def sans_of(cert) -> tuple[list, list]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.DNSName), names.get_values_for_type(x509.IPAddress)


def test_host_names_starting_with_a_digit_are_dns_names_and_ip_addresses_are_ips():
    sans = ["1modelplane.ns.svc", "1modelplane.ns.svc.cluster.local", "9-webhook", "modelplane.ns.svc",
            "127.0.0.1", "10.96.0.12", "::1", "fd00::10"]
    dns, ips = sans_of(issue("1modelplane", new_key(), sans=sans, server=True))
    assert dns == ["1modelplane.ns.svc", "1modelplane.ns.svc.cluster.local", "9-webhook", "modelplane.ns.svc"]
    assert ips == [ipaddress.ip_address(a) for a in ("127.0.0.1", "10.96.0.12", "::1", "fd00::10")]


def test_a_certificate_covering_its_names_is_kept():
    sans = ["1modelplane.ns.svc", "127.0.0.1", "::1"]
    pem = cert_pem(issue("1modelplane", new_key(), sans=sans, server=True))
    assert not needs_renewal(pem, sans)
    assert not needs_renewal(pem, ["0:0:0:0:0:0:0:1"])  # the same IPv6 address, written out
    assert needs_renewal(pem, [*sans, "other.ns.svc"])


# --- rotation of the webhook's certificates (certs.decide / certs.rotate) -----------------------------------------

SANS = ["modelplane-webhook.modelplane.svc"]
T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def legacy_secret(now, sans=SANS, days=365) -> dict[str, bytes]:
    """A Secret as the operator wrote it before rotation: a one-year CA and serving certificate made together, no CA
    key, no key identifiers."""
    def cert(cn, key, issuer, ca):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer[0].subject if issuer else name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + days * DAY)
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), True)
        else:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False).add_extension(
                x509.SubjectAlternativeName(
                [x509.IPAddress(ip) if (ip := certs._ip(s)) is not None else x509.DNSName(s) for s in sans]), False)
        return b.sign(issuer[1] if issuer else key, hashes.SHA256())
    ca_key, key = new_key(), new_key()
    ca = cert("modelplane-webhook-ca", ca_key, None, True)
    return {"ca.crt": cert_pem(ca), "tls.crt": cert_pem(cert("modelplane-webhook", key, (ca, ca_key), False)),
            "tls.key": key_pem(key)}


def leaf(data):
    return load_certs(data["tls.crt"])[0]


def bundle(data):
    return load_certs(data["ca.crt"])


def trusts(data_bundle, data_leaf) -> bool:
    """The bundle of one state verifies the serving certificate of another (signature and name of a CA of it)."""
    return any(issued_by(leaf(data_leaf), ca) for ca in bundle(data_bundle))


def fresh(now=T0, lifetimes=Lifetimes()):
    decision, data = rotate({}, "modelplane-webhook", SANS, now, lifetimes)
    assert decision.action == NEW_CA_AND_LEAF
    return data


def test_first_start_makes_a_ten_year_ca_and_a_one_year_serving_certificate_then_keeps_them():
    data = fresh()
    [ca] = bundle(data)
    assert ca.not_valid_after_utc == T0 + 3650 * DAY and leaf(data).not_valid_after_utc == T0 + 365 * DAY
    assert issued_by(leaf(data), ca) and not needs_renewal(data["tls.crt"], SANS)
    assert certs._public(ca) == certs._public(certs._load_key(data["ca.key"]))
    for later in (T0, T0 + 200 * DAY, T0 + 274 * DAY):
        assert decide(data, SANS, later).action == KEEP


def test_a_serving_certificate_near_expiry_is_renewed_from_the_same_ca_and_the_bundle_stays():
    data = fresh()
    decision, new = rotate(data, "modelplane-webhook", SANS, T0 + 276 * DAY)
    assert decision.action == RENEW_LEAF and "expires in 89 days" in decision.reason
    assert new["ca.crt"] == data["ca.crt"] and new["ca.key"] == data["ca.key"]
    assert leaf(new).serial_number != leaf(data).serial_number
    # replicas still serving the previous certificate, and API servers with either bundle, all agree
    assert trusts(new, data) and trusts(data, new)
    assert decide(new, SANS, T0 + 276 * DAY).action == KEEP


def test_a_serving_certificate_that_cannot_serve_is_replaced_at_once():
    data = fresh()
    assert decide(data, [*SANS, "other.ns.svc"], T0).action == RENEW_LEAF
    assert decide(data, SANS, T0 + 365 * DAY - datetime.timedelta(minutes=30)).action == RENEW_LEAF
    assert decide({**data, "tls.key": key_pem(new_key())}, SANS, T0).reason == \
        "the serving certificate does not match its key"
    assert decide({k: v for k, v in data.items() if k != "tls.crt"}, SANS, T0).action == RENEW_LEAF


def test_a_ca_near_its_end_joins_the_bundle_first_and_signs_only_after_settling():
    data = fresh()
    t = T0 + 9 * 365 * DAY + 10 * DAY  # the CA has under a year left
    data = rotate(data, "modelplane-webhook", SANS, t - 100 * DAY)[1]  # a current serving certificate
    decision, stage_a = rotate(data, "modelplane-webhook", SANS, t)
    assert decision.action == NEW_CA
    assert stage_a["tls.crt"] == data["tls.crt"] and stage_a["tls.key"] == data["tls.key"]  # still served
    new_ca, old_ca = bundle(stage_a)
    assert old_ca.fingerprint(hashes.SHA256()) == bundle(data)[0].fingerprint(hashes.SHA256())
    assert new_ca.subject != old_ca.subject  # a verifier never confuses the two
    assert new_ca.not_valid_after_utc == t + 3650 * DAY
    # the new CA waits for the bundle to reach every client
    assert decide(stage_a, SANS, t + datetime.timedelta(minutes=50)).action == KEEP
    decision, stage_b = rotate(stage_a, "modelplane-webhook", SANS, t + datetime.timedelta(hours=1))
    assert decision.action == RENEW_LEAF and "previous CA" in decision.reason
    assert issued_by(leaf(stage_b), new_ca) and stage_b["ca.crt"] == stage_a["ca.crt"]
    # a client that has only the stage A bundle trusts the new certificate; the old one is trusted after it
    assert trusts(stage_a, stage_b) and trusts(stage_b, data) and trusts(data, stage_a)
    # the old CA leaves the bundle once it expires
    stage_b = rotate(stage_b, "modelplane-webhook", SANS, old_ca.not_valid_after_utc - 70 * DAY)[1]
    decision, pruned = rotate(stage_b, "modelplane-webhook", SANS, old_ca.not_valid_after_utc)
    assert decision.action == PRUNE and [c.subject for c in bundle(pruned)] == [new_ca.subject]
    assert pruned["tls.crt"] == stage_b["tls.crt"]


def test_a_secret_of_the_previous_operator_is_taken_over_without_a_gap():
    old = legacy_secret(T0)
    decision, stage_a = rotate(old, "modelplane-webhook", SANS, T0 + 10 * DAY)
    assert decision.action == NEW_CA and "no CA key" in decision.reason
    assert stage_a["tls.crt"] == old["tls.crt"] and len(bundle(stage_a)) == 2
    assert trusts(stage_a, old) and trusts(old, stage_a)
    decision, stage_b = rotate(stage_a, "modelplane-webhook", SANS, T0 + 10 * DAY + datetime.timedelta(hours=2))
    assert decision.action == RENEW_LEAF
    assert trusts(stage_a, stage_b) and trusts(stage_b, old)
    assert leaf(stage_b).not_valid_after_utc == T0 + 375 * DAY + datetime.timedelta(hours=2)


def test_a_previous_operators_secret_that_cannot_serve_gets_both_at_once_and_keeps_the_old_ca_trusted():
    old = legacy_secret(T0)
    decision, new = rotate(old, "modelplane-webhook", SANS, T0 + 365 * DAY - datetime.timedelta(minutes=20))
    assert decision.action == NEW_CA_AND_LEAF
    assert trusts(new, old) and len(bundle(new)) == 2  # replicas not yet restarted serve the old one a while
    decision, new = rotate(legacy_secret(T0, sans=["old-name.svc"]), "modelplane-webhook", SANS, T0)
    assert decision.action == NEW_CA_AND_LEAF and "does not cover" in decision.reason


def test_a_ca_key_that_matches_no_ca_of_the_bundle_means_a_new_ca():
    data = fresh()
    decision = decide({**data, "ca.key": key_pem(new_key())}, SANS, T0)
    assert decision.action == NEW_CA and "matches no CA" in decision.reason


def test_a_serving_certificate_never_outlives_its_ca():
    lifetimes = Lifetimes(ca=400 * DAY, ca_renew_before=30 * DAY)
    data = fresh(lifetimes=lifetimes)
    assert leaf(data).not_valid_after_utc == T0 + 365 * DAY
    data = rotate(data, "modelplane-webhook", SANS, T0 + 300 * DAY, lifetimes)[1]
    assert leaf(data).not_valid_after_utc == bundle(data)[0].not_valid_after_utc == T0 + 400 * DAY


def test_lifetimes_out_of_order_are_refused():
    with pytest.raises(ValueError):
        Lifetimes(settle=100 * DAY)
    with pytest.raises(ValueError):
        Lifetimes(ca=365 * DAY)


def test_twenty_five_years_of_checks_never_leave_a_replica_untrusted():
    """Every 10 days over 25 years (the first CA included): at every step the served certificate and its CA are
    valid, and the bundles of the step and the step before each verify the certificates of both (a replica that
    has not read the Secret again yet; an API server that has not taken up the new bundle yet)."""
    now, data, actions = T0, fresh(), []
    while now < T0 + 25 * 365 * DAY:
        now += 10 * DAY
        decision, new = rotate(data, "modelplane-webhook", SANS, now)
        actions.append(decision.action)
        served = leaf(new)
        assert served.not_valid_before_utc <= now < served.not_valid_after_utc
        assert any(issued_by(served, ca) and ca.not_valid_after_utc > now for ca in bundle(new))
        assert trusts(new, data) and trusts(data, new) and trusts(new, new)
        assert len(bundle(new)) <= 2
        data = new
    assert NEW_CA_AND_LEAF not in actions
    assert actions.count(NEW_CA) == 2 and actions.count(PRUNE) == 2  # years 9 and 18
    assert 25 <= actions.count(RENEW_LEAF) <= 40


def test_the_folder_of_a_local_run_keeps_its_ca_key_and_renews_in_place(tmp_path):
    old = legacy_secret(certs.utcnow(), sans=["127.0.0.1"])
    certs.write_files(tmp_path, old)  # what serving_pair wrote before
    ca = certs.serving_pair(tmp_path, "modelplane-webhook", ["127.0.0.1"])
    assert len(load_certs(ca)) == 2 and (tmp_path / "ca.key").exists()
    assert (tmp_path / "tls.crt").read_bytes() == old["tls.crt"]
    assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "tls.key").stat().st_mode & 0o777) == "0o600"
    assert certs.serving_pair(tmp_path, "modelplane-webhook", ["127.0.0.1"]) == ca
