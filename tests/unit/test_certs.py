"""Serving certificates: only real IP addresses become IP SANs; every other name, digits first or not, is a DNS name."""

import ipaddress

from cryptography import x509

from modelplane_operator.certs import cert_pem, issue, needs_renewal, new_key


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
