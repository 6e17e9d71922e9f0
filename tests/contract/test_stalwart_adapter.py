"""protocols/stalwart against the fake, in both API forms, including the odd corners."""

from __future__ import annotations

import base64

import pytest

from spine_comms.protocols.stalwart import DkimKey, DnsRecord, StalwartError, connect, health
from spine_comms.protocols.stalwart.zone import from_rest_records, parse_zone_text
from tests.stalwart_fake import FakeStalwart


def login(fake: FakeStalwart, **overrides):
    args = {"username": fake.admin_login, "secret": fake.admin_password, "timeout": 5.0, **overrides}
    return connect(fake.url, **args)


def test_the_form_is_found_by_probing(fake):
    with login(fake) as admin:
        assert admin.form == {"0.16": "jmap", "0.15": "rest"}[fake.mode]
        assert admin.version == {"0.16": "0.16 or later", "0.15": "0.10 to 0.15"}[fake.mode]
        assert admin.domains() == ["example.test"]
        assert admin.health() == {"live": True, "ready": True}
    paths = [r["path"] for r in fake.requests]
    assert paths[0] == "/api/account"
    if fake.mode == "0.15":
        assert "/api/principal" in paths and "/.well-known/jmap" not in paths


@pytest.fixture
def v016():
    with FakeStalwart("0.16") as server:
        server.add_domain("example.test")
        yield server


def test_jmap_session_found_through_the_307_keeps_the_authorization(v016):
    fake = v016
    with login(fake):
        pass
    session = [r for r in fake.requests if r["path"] == "/jmap/session"]
    assert session and session[0]["authorization"].startswith("Basic ")
    posts = [r for r in fake.requests if r["method"] == "POST"]
    assert all(r["content_type"] == "application/json" for r in posts)


def test_api_url_naming_another_host_is_reached_through_our_base(v016):
    fake = v016
    fake.public_url = "https://mail.example.test"  # the server's public URL, not how we reach it
    with login(fake) as admin:
        assert admin.domains() == ["example.test"]


def test_dkim_keys_both_algorithms_with_their_p_values(fake):
    rsa = fake.add_dkim("example.test", "rsa", selector="s-rsa" if fake.mode == "0.16" else None)
    ed = fake.add_dkim("example.test", "ed25519")
    with login(fake) as admin:
        keys = admin.dkim_keys("example.test")
    assert [k.algorithm for k in keys] == ["ed25519-sha256", "rsa-sha256"]
    held = fake.dkim_public_keys("example.test")
    for key in keys:
        assert isinstance(key, DkimKey) and key.domain == "example.test" and key.stage == "active"
        assert key.public_key == held[key.selector]
    assert len(base64.b64decode(keys[0].public_key)) == 32
    assert keys[1].public_key.startswith("MIIB")
    assert rsa and ed


def test_dkim_keys_never_carry_a_private_key(fake):
    fake.add_dkim("example.test", "rsa")
    with login(fake) as admin:
        keys = admin.dkim_keys()
    assert "PRIVATE" not in repr(keys) and "****" not in repr(keys)


def test_015_keys_of_a_lookalike_domain_are_not_mixed_in():
    with FakeStalwart("0.15") as fake:
        fake.add_domain("example.test")
        fake.add_domain("example.test.au")
        fake.add_dkim("example.test.au", "rsa")
        with login(fake) as admin:
            assert admin.dkim_keys("example.test") == []
            assert [k.domain for k in admin.dkim_keys()] == ["example.test.au"]
        assert not any("filter=" in r["query"] for r in fake.requests)  # never the substring filter


def test_016_stages_are_reported():
    with FakeStalwart("0.16") as fake:
        fake.add_dkim("example.test", "rsa", selector="old", stage="retiring")
        fake.add_dkim("example.test", "rsa", selector="new", stage="pending")
        with login(fake) as admin:
            stages = {k.selector: k.stage for k in admin.dkim_keys("example.test")}
    assert stages == {"old": "retiring", "new": "pending"}


def test_create_dkim_then_list_it(fake):
    with login(fake) as admin:
        admin.create_dkim("example.test", "rsa-sha256", "sel1r")
        admin.create_dkim("example.test", "ed25519", "sel1e")
        keys = {k.algorithm: k for k in admin.dkim_keys("example.test")}
    assert keys["rsa-sha256"].selector == "sel1r" and keys["ed25519-sha256"].selector == "sel1e"
    if fake.mode == "0.15":
        assert set(fake.signatures) == {"rsa-example.test", "ed25519-example.test"}  # the ids that sign
        assert fake.reloads == 2


def test_create_dkim_refusals_are_api_errors(fake):
    with login(fake) as admin:
        admin.create_dkim("example.test", "rsa", "dup")
        with pytest.raises(StalwartError) as caught:
            admin.create_dkim("example.test", "rsa", "dup")
    assert caught.value.kind == "api"
    # 0.16 would accept a second key under the selector: the client refuses before asking.
    assert ("already holds" if fake.mode == "0.16" else "fieldAlreadyExists") in str(caught.value)


def test_unknown_domain_is_not_found(fake):
    with login(fake) as admin:
        for call in (lambda: admin.dns_records("nope.test"), lambda: admin.dkim_keys("nope.test")):
            with pytest.raises(StalwartError) as caught:
                call()
            assert caught.value.kind == "not_found" and "nope.test" in str(caught.value)


def test_dns_records_normalized_alike_in_both_forms(fake):
    fake.add_dkim("example.test", "rsa", selector="s1" if fake.mode == "0.16" else None)
    with login(fake) as admin:
        records = admin.dns_records("example.test")
    assert all(isinstance(r, DnsRecord) for r in records)
    assert DnsRecord("MX", "example.test", "10 mail.example.test") in records
    assert DnsRecord("SRV", "_submissions._tcp.example.test", "0 1 465 mail.example.test") in records
    dkim = [r for r in records if "._domainkey." in r.name]
    assert len(dkim) == 1
    ((selector, public),) = fake.dkim_public_keys("example.test").items()
    assert dkim[0] == DnsRecord("TXT", f"{selector}._domainkey.example.test", f"v=DKIM1; k=rsa; h=sha256; p={public}")
    assert all(r.name == r.name.lower() and not r.name.endswith(".") for r in records)
    spf = "v=spf1 mx -all" if fake.mode == "0.16" else "v=spf1 mx ra=postmaster -all"
    assert DnsRecord("TXT", "example.test", spf) in records


def test_wrong_password_is_auth_and_never_shows_the_secret(fake):
    sentinel = "S3ntinel-Secret-4711"
    with pytest.raises(StalwartError) as caught:
        login(fake, secret=sentinel)
    assert caught.value.kind == "auth" and caught.value.status == 401
    assert fake.admin_login in str(caught.value)
    assert sentinel not in str(caught.value) and base64.b64encode(sentinel.encode()).decode() not in str(caught.value)


def test_api_keys_as_bearer_016_and_basic_015(fake):
    if fake.mode == "0.16":
        token = fake.add_api_key()
        admin = connect(fake.url, username=None, secret=token, timeout=5)
    else:
        secret = fake.add_api_key(name="spine")
        admin = connect(fake.url, username="spine", secret=secret, timeout=5)
    with admin:
        assert admin.domains() == ["example.test"]


def test_forbidden_is_an_auth_error(fake):
    fake.forbidden.add(fake.admin_login)
    with pytest.raises(StalwartError) as caught, login(fake) as admin:
        admin.domains()
    assert caught.value.kind == "auth"


def test_nothing_listening_is_unreachable():
    with FakeStalwart("0.16") as fake:
        url = fake.url
    with pytest.raises(StalwartError) as caught:
        connect(url, username="a", secret="b", timeout=2)
    assert caught.value.kind == "unreachable"


def test_a_slow_server_times_out_as_unreachable():
    with FakeStalwart("0.16") as fake:
        fake.response_delay = 1.5
        with pytest.raises(StalwartError) as caught:
            connect(fake.url, username=fake.admin_login, secret=fake.admin_password, timeout=0.3)
    assert caught.value.kind == "unreachable" and "0.3" in str(caught.value)


def test_a_server_that_is_not_stalwart_is_unsupported():
    import http.server
    import threading

    class Nothing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Nothing)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with pytest.raises(StalwartError) as caught:
            connect(f"http://127.0.0.1:{server.server_address[1]}", username="a", secret="b", timeout=2)
    finally:
        server.shutdown()
    assert caught.value.kind == "unsupported"


def test_credentials_in_the_url_are_refused():
    with pytest.raises(StalwartError) as caught:
        connect("https://admin:pw@127.0.0.1:1", username=None, secret=None)
    assert caught.value.kind == "unsupported" and "pw" not in str(caught.value)


def test_tls_by_address_needs_server_name_and_the_ca(fake_tls):
    ok = login(fake_tls, ca_file=fake_tls.ca_file, server_name=fake_tls.hostname)
    with ok:
        assert ok.form == "jmap"
    with pytest.raises(StalwartError) as no_name:
        login(fake_tls, ca_file=fake_tls.ca_file)  # the certificate does not name 127.0.0.1
    assert no_name.value.kind == "unreachable" and "TLS" in str(no_name.value)
    with pytest.raises(StalwartError) as no_ca:
        login(fake_tls, server_name=fake_tls.hostname)  # the system store does not know the fake's CA
    assert no_ca.value.kind == "unreachable" and "certificate verify failed" in str(no_ca.value)


def test_health_without_credentials(fake):
    fake.ready = False
    assert health(fake.url, timeout=5) == {"live": True, "ready": False}
    assert all(r["authorization"] is None for r in fake.requests)


# ---- the normalizer on its own


def test_zone_text_with_ttls_classes_origin_comments_and_continuations():
    text = """$ORIGIN example.test.
$TTL 3600
@ 300 IN MX 10 mail   ; relative target
   IN TXT "v=spf1 " "mx -all"
sel._domainkey IN TXT ( "v=DKIM1; k=ed25519; "   ; split
    "p=abc\\"d" )
_sub._tcp.example.test. IN SRV 0 1 465 MAIL.Example.test.
"""
    assert parse_zone_text(text) == [
        DnsRecord("MX", "example.test", "10 mail.example.test"),
        DnsRecord("TXT", "example.test", "v=spf1 mx -all"),
        DnsRecord("TXT", "sel._domainkey.example.test", 'v=DKIM1; k=ed25519; p=abc"d'),
        DnsRecord("SRV", "_sub._tcp.example.test", "0 1 465 mail.example.test"),
    ]


def test_zone_text_errors_are_clear():
    from spine_comms.protocols.stalwart.zone import ZoneSyntaxError

    for bad in ('a. IN TXT ( "x"', 'a. IN TXT "x', "a. IN TXT )"):
        with pytest.raises(ZoneSyntaxError):
            parse_zone_text(bad)


def test_rest_records_lose_trailing_dots_and_keep_txt_whole():
    items = [{"type": "MX", "name": "Example.test.", "content": "10 mail.example.test."},
             {"type": "TXT", "name": "_dmarc.example.test.", "content": "v=DMARC1; p=reject"},
             {"type": "CNAME", "name": "mail.example.test.", "content": "host.example.net."}]  # fmt: skip
    assert from_rest_records(items) == [
        DnsRecord("MX", "example.test", "10 mail.example.test"),
        DnsRecord("TXT", "_dmarc.example.test", "v=DMARC1; p=reject"),
        DnsRecord("CNAME", "mail.example.test", "host.example.net"),
    ]


def test_same_public_key_across_pkcs1_and_spki():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from spine_comms.protocols.stalwart import same_public_key

    def encodings(key):
        public = key.public_key()
        der = serialization.Encoding.DER
        pkcs1 = public.public_bytes(der, serialization.PublicFormat.PKCS1)
        spki = public.public_bytes(der, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(pkcs1).decode(), base64.b64encode(spki).decode()

    pkcs1, spki = encodings(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    other_pkcs1, _ = encodings(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert pkcs1.startswith("MIIBCg") and spki.startswith("MIIBIj")
    assert same_public_key(pkcs1, spki) and same_public_key(spki, pkcs1)
    assert same_public_key(spki, spki[:40] + " " + spki[40:])  # whitespace from split TXT strings
    assert not same_public_key(pkcs1, other_pkcs1)
    assert not same_public_key(pkcs1, "not base64!")


def test_015_signing_rule_forms():
    from spine_comms.protocols.stalwart.signing_rule import SigningRule

    default = SigningRule({})
    assert default.signature_ids("Example.TEST.").ids == {"rsa-example.test", "ed25519-example.test"}
    single = SigningRule({"auth.dkim.sign": "['rsa-' + sender_domain, \"k,1\"]"})
    assert single.signature_ids("a.test").ids == {"rsa-a.test", "k,1"} and single.signature_ids("a.test").certain
    per_domain = SigningRule({"auth.dkim.sign.0000.if": "sender_domain == 'a.test'",
                              "auth.dkim.sign.0000.then": "'key-a'",
                              "auth.dkim.sign.0001.if": "true", "auth.dkim.sign.0001.then": "false",
                              "auth.dkim.sign.0002.else": "'never'"})  # fmt: skip
    assert per_domain.signature_ids("a.test").ids == {"key-a"}
    assert per_domain.signature_ids("b.test").ids == set() and per_domain.signature_ids("b.test").certain
    unknown = SigningRule({"auth.dkim.sign.0000.if": "listener == 'smtp'", "auth.dkim.sign.0000.then": "'x'",
                           "auth.dkim.sign.0001.else": "'rsa-' + sender_domain"})  # fmt: skip
    found = unknown.signature_ids("a.test")
    assert not found.certain and found.ids == {"x", "rsa-a.test"} and "listener" in found.why


def test_016_a_proxy_path_prefix_survives_the_well_known_redirect():
    with FakeStalwart("0.16") as fake:
        fake.add_domain("example.test")
        fake.path_prefix = "/stalwart"
        admin = connect(fake.url + "/stalwart", username=fake.admin_login, secret=fake.admin_password, timeout=5)
        with admin:
            assert admin.domains() == ["example.test"]
        paths = [r["path"] for r in fake.requests]
        assert "/stalwart/jmap/session" in paths and "/jmap/session" not in paths


def test_016_retired_keys_in_the_zone_are_not_recommended():
    with FakeStalwart("0.16") as fake:
        fake.add_domain("example.test")
        fake.add_dkim("example.test", "rsa", selector="old", stage="retired")
        fake.add_dkim("example.test", "rsa", selector="new")
        with login(fake) as admin:
            names = {r.name for r in admin.dns_records("example.test") if r.type == "TXT"}
    assert "new._domainkey.example.test" in names and "old._domainkey.example.test" not in names
