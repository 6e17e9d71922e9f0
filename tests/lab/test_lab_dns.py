"""The lab zone, as a client (dnspython, never the system resolver) sees it."""

from __future__ import annotations

import uuid

import dns.message
import dns.query
import dns.rcode
import dns.resolver
import dns.update
import pytest

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def resolver(lab) -> dns.resolver.Resolver:
    res = dns.resolver.Resolver(configure=False)
    res.nameservers, res.port = [lab["dns"]["server"]], lab["dns"]["port"]
    res.lifetime = 3
    return res


def txt(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    return [b"".join(r.strings).decode() for r in resolver.resolve(name, "TXT")]


def test_zone_has_the_mail_records(resolver, lab):
    for host in ("mail", "mx", "imap", "smtp", "dav"):
        assert [r.address for r in resolver.resolve(f"{host}.spine.test", "A")] == ["127.0.0.1"]
    assert [r.exchange.to_text() for r in resolver.resolve("spine.test", "MX")] == ["mx.spine.test."]
    assert txt(resolver, "spine.test") == ["v=spf1 mx -all"]
    dkim_txt = txt(resolver, f"{lab['dkim']['selector']}._domainkey.spine.test")[0]
    assert dkim_txt.startswith("v=DKIM1; k=rsa; p=MII") and len(dkim_txt) > 300  # RSA 2048
    assert txt(resolver, "_dmarc.spine.test") == ["v=DMARC1; p=reject; rua=mailto:dmarc@spine.test"]
    assert txt(resolver, "_mta-sts.spine.test")[0].startswith("v=STSv1; id=")
    assert txt(resolver, "_smtp._tls.spine.test") == ["v=TLSRPTv1; rua=mailto:tlsrpt@spine.test"]
    ptr = resolver.resolve("1.0.0.127.in-addr.arpa", "PTR")
    assert [r.target.to_text() for r in ptr] == ["mail.spine.test."]


@pytest.mark.parametrize(
    ("service", "port_name", "host"),
    [
        ("_imap", "imap", "imap"),
        ("_imaps", "imaps", "imap"),
        ("_submission", "submission", "smtp"),
        ("_submissions", "submissions", "smtp"),
        ("_caldav", "radicale", "dav"),
        ("_caldavs", "radicale_tls", "dav"),
        ("_carddav", "radicale", "dav"),
        ("_carddavs", "radicale_tls", "dav"),
    ],
)
def test_srv_records_point_at_the_lab_ports(resolver, lab, service, port_name, host):
    (srv,) = resolver.resolve(f"{service}._tcp.spine.test", "SRV")
    assert (srv.target.to_text(), srv.port) == (f"{host}.spine.test.", lab["ports"][port_name])
    if "dav" in service:
        assert txt(resolver, f"{service}._tcp.spine.test") == ["path=/"]


def test_names_outside_the_lab_are_refused(lab):
    query = dns.message.make_query("example.com", "A")
    reply = dns.query.udp(query, lab["dns"]["server"], port=lab["dns"]["port"], timeout=3)
    assert reply.rcode() == dns.rcode.REFUSED


def test_daemon_resolver_address_answers_on_port_53(lab):
    query = dns.message.make_query("mx.spine.test", "A")
    reply = dns.query.udp(query, lab["dns"]["resolver_ip"], port=53, timeout=3)
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer


def test_dynamic_update_from_loopback_is_visible(resolver, lab):
    name = f"dyn-{uuid.uuid4().hex[:8]}"
    update = dns.update.Update("spine.test")
    update.replace(name, 60, "TXT", '"changed mid-run"')
    reply = dns.query.tcp(update, lab["dns"]["server"], port=lab["dns"]["port"], timeout=3)
    assert reply.rcode() == dns.rcode.NOERROR
    assert txt(resolver, f"{name}.spine.test") == ["changed mid-run"]

    update = dns.update.Update("spine.test")
    update.delete(name)
    dns.query.tcp(update, lab["dns"]["server"], port=lab["dns"]["port"], timeout=3)
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve(f"{name}.spine.test", "TXT")
