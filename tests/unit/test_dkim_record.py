"""DKIM key records: parsing (RFC 6376 §3.6.1, RFC 8463), strength, fingerprints, key matching, rendering."""

from __future__ import annotations

import base64
import datetime
import string
from functools import cache

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.mail.dkim_record import (
    generate_key,
    key_fingerprint,
    key_strength,
    parse_dkim_record,
    private_key_matches,
    render_selector,
    txt_strings,
    zone_line,
)

DER, SPKI, PKCS1 = (
    serialization.Encoding.DER,
    serialization.PublicFormat.SubjectPublicKeyInfo,
    serialization.PublicFormat.PKCS1,
)


@cache
def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def rsa_public(bits: int, form=SPKI) -> str:
    if bits < 1024:  # cryptography will not generate these any more; a modulus of the right size is enough
        public = rsa.RSAPublicNumbers(65537, (1 << (bits - 1)) | 0x10001).public_key()
    else:
        public = rsa_key(bits).public_key()
    return b64(public.public_bytes(DER, form))


def pem(key, fmt=serialization.PrivateFormat.PKCS8, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


ED_KEY = ed25519.Ed25519PrivateKey.generate()
ED_RAW = ED_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# ---- parsing and strength


def test_a_good_rsa_2048_record_is_ok():
    record = parse_dkim_record(f"v=DKIM1; k=rsa; p={rsa_public(2048)}")
    assert record.problems == [] and record.warnings == []
    assert (record.version, record.key_type, record.bits) == ("DKIM1", "rsa", 2048)
    assert record.usable and not record.revoked and not record.testing
    assert key_strength(record) == ("ok", "RSA 2048 bits")


def test_rsa_1024_warns_and_512_fails():
    weak = parse_dkim_record(f"v=DKIM1; k=rsa; p={rsa_public(1024)}")
    assert weak.bits == 1024 and weak.problems == []
    status, reason = key_strength(weak)
    assert status == "warn" and "1024" in reason and "2048" in reason
    broken = parse_dkim_record(f"v=DKIM1; k=rsa; p={rsa_public(512)}")
    assert broken.bits == 512
    assert key_strength(broken)[0] == "fail" and "512" in key_strength(broken)[1]


def test_a_pkcs1_rsa_key_is_read_too():
    # Stalwart may publish the bare RSAPublicKey instead of SubjectPublicKeyInfo; verifiers accept both.
    record = parse_dkim_record(f"v=DKIM1; k=rsa; h=sha256; p={rsa_public(2048, PKCS1)}")
    assert record.problems == [] and record.bits == 2048


def test_ed25519_of_32_bytes_is_ok_and_31_fails():
    good = parse_dkim_record(f"v=DKIM1; k=ed25519; p={b64(ED_RAW)}")
    assert good.problems == [] and good.bits == 256 and good.public_key == ED_RAW
    assert key_strength(good) == ("ok", "Ed25519 (32 bytes)")
    short = parse_dkim_record(f"v=DKIM1; k=ed25519; p={b64(ED_RAW[:31])}")
    assert short.problems == ["ed25519 key is 31 bytes, not 32"]
    assert key_strength(short) == ("fail", "ed25519 key is 31 bytes, not 32")


def test_an_ed25519_key_in_spki_form_is_a_problem_that_says_so():
    spki = ED_KEY.public_key().public_bytes(DER, SPKI)
    record = parse_dkim_record(f"v=DKIM1; k=ed25519; p={b64(spki)}")
    assert "44 bytes" in record.problems[0] and "SubjectPublicKeyInfo" in record.problems[0]


def test_testing_flag_warns():
    record = parse_dkim_record(f"v=DKIM1; k=rsa; t=y; p={rsa_public(2048)}")
    assert record.testing
    status, reason = key_strength(record)
    assert status == "warn" and "t=y" in reason
    assert not parse_dkim_record(f"v=DKIM1; t=s; p={rsa_public(2048)}").testing


def test_empty_p_is_a_revoked_key():
    record = parse_dkim_record("v=DKIM1; k=rsa; p=")
    assert record.revoked and record.public_key is None and record.problems == []
    assert key_strength(record) == ("fail", "revoked (empty p=)")
    assert parse_dkim_record("v=DKIM1; p= \t").revoked


def test_missing_p_and_bad_base64_are_problems():
    assert parse_dkim_record("v=DKIM1; k=rsa").problems == ["no p= tag (the public key is required)"]
    bad = parse_dkim_record("v=DKIM1; k=rsa; p=MIIB$$$")
    assert bad.problems == ["p= is not valid base64"]
    assert key_strength(bad)[0] == "fail"


def test_base64_that_is_not_a_key_is_a_problem():
    record = parse_dkim_record(f"v=DKIM1; k=rsa; p={b64(b'not a key at all')}")
    assert record.problems == ["p= is not a DER public key (neither SubjectPublicKeyInfo nor PKCS#1)"]
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(DER, SPKI)
    assert "but k= says rsa" in parse_dkim_record(f"k=rsa; p={b64(ec_key)}").problems[0]


def test_version_must_be_dkim1_and_first():
    assert parse_dkim_record(f"v=DKIM2; p={rsa_public(2048)}").problems == ["v='DKIM2' is not DKIM1"]
    late = parse_dkim_record(f"k=rsa; v=DKIM1; p={rsa_public(2048)}")
    assert late.problems == ["v= must be the first tag"]
    absent = parse_dkim_record(f"k=rsa; p={rsa_public(2048)}")
    assert absent.problems == [] and absent.version is None and "no v=DKIM1" in absent.warnings[0]


def test_k_missing_defaults_to_rsa_and_unknown_k_is_a_problem():
    assert parse_dkim_record(f"v=DKIM1; p={rsa_public(2048)}").key_type == "rsa"
    unknown = parse_dkim_record(f"v=DKIM1; k=dsa; p={rsa_public(2048)}")
    assert unknown.key_type == "dsa" and "unknown key type k='dsa'" in unknown.problems[0]


def test_whitespace_and_folding_are_allowed_around_tags_and_inside_p():
    p = rsa_public(2048)
    folded = f" v = DKIM1 ;\r\n\tk=rsa;  p={p[:100]}\r\n {p[100:200]} \t{p[200:]} ; "
    record = parse_dkim_record(folded)
    assert record.problems == [] and record.bits == 2048
    assert record.fingerprint == key_fingerprint("rsa", p)


def test_unknown_tags_are_kept_and_noted():
    record = parse_dkim_record(f"v=DKIM1; k=rsa; n=rotated 2026; x_custom=1; p={rsa_public(2048)}")
    assert record.tags["x_custom"] == "1" and record.tags["n"] == "rotated 2026"
    assert record.problems == [] and record.warnings == ["unknown tag(s) kept and ignored: x_custom"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("v=DKIM1; garbage; p=", "not a tag=value pair"),
        ("v=DKIM1; 9k=rsa; p=", "bad tag name"),
        ("v=DKIM1; p=; p=", "appears more than once"),
        ("v=DKIM1; n=caf\u00e9; p=", "n= holds a character"),
        ("v=DKIM1; s=tlsrpt; p=", "not for mail"),
        ("v=DKIM1; h=sha1; p=", "does not allow sha256"),
    ],
)
def test_syntax_and_tag_problems(text, fragment):
    problems = parse_dkim_record(text).problems
    assert any(fragment in p for p in problems), problems


def test_service_lists_and_hash_lists_that_include_mail_and_sha256_are_fine():
    record = parse_dkim_record(f"v=DKIM1; h=sha1:sha256; s=email:tlsrpt; p={rsa_public(2048)}")
    assert record.problems == []


# ---- fingerprints and key matching


def test_fingerprint_is_the_same_for_spki_and_pkcs1_encodings():
    spki, pkcs1 = rsa_public(2048, SPKI), rsa_public(2048, PKCS1)
    assert spki != pkcs1
    assert key_fingerprint("rsa", spki) == key_fingerprint("rsa", pkcs1)
    assert key_fingerprint("rsa", spki).startswith("sha256:")
    assert key_fingerprint("rsa", spki) != key_fingerprint("rsa", rsa_public(1024))


def test_fingerprint_of_ed25519_raw_and_spki_agree_and_junk_is_none():
    spki = ED_KEY.public_key().public_bytes(DER, SPKI)
    assert key_fingerprint("ed25519", b64(ED_RAW)) == key_fingerprint("ed25519", b64(spki)) is not None
    assert key_fingerprint("ed25519", b64(ED_RAW[:31])) is None
    assert key_fingerprint("rsa", "###") is None
    assert key_fingerprint("rsa", "") is None
    assert key_fingerprint("dsa", b64(ED_RAW)) is None


@pytest.mark.parametrize(
    ("fmt", "header"),
    [
        (serialization.PrivateFormat.TraditionalOpenSSL, b"-----BEGIN RSA PRIVATE KEY-----"),
        (serialization.PrivateFormat.PKCS8, b"-----BEGIN PRIVATE KEY-----"),
    ],
)
def test_an_rsa_private_key_matches_its_record_in_pkcs1_and_pkcs8(fmt, header):
    private = pem(rsa_key(2048), fmt)
    assert private.startswith(header)
    for form in (SPKI, PKCS1):
        ok, reason = private_key_matches(private, parse_dkim_record(f"v=DKIM1; k=rsa; p={rsa_public(2048, form)}"))
        assert ok, reason
        assert "matches" in reason


def test_a_different_key_does_not_match_and_the_reason_holds_no_key_material():
    private = pem(rsa_key(2048))
    other = parse_dkim_record(f"v=DKIM1; k=rsa; p={rsa_public(1024)}")
    ok, reason = private_key_matches(private, other)
    assert not ok and "is not the published key" in reason
    body = b"".join(private.splitlines()[1:-1]).decode()
    assert body[:40] not in reason and other.tags["p"][:40] not in reason


def test_ed25519_private_key_matches_and_types_must_agree():
    private = pem(ED_KEY)
    assert private_key_matches(private, parse_dkim_record(f"v=DKIM1; k=ed25519; p={b64(ED_RAW)}"))[0]
    ok, reason = private_key_matches(private, parse_dkim_record(f"v=DKIM1; k=rsa; p={rsa_public(2048)}"))
    assert not ok and reason == "the private key is ed25519, the record is k=rsa"
    ok, reason = private_key_matches(pem(rsa_key(2048)), parse_dkim_record(f"v=DKIM1; k=ed25519; p={b64(ED_RAW)}"))
    assert not ok and "the private key is rsa" in reason


def test_unreadable_encrypted_revoked_and_unsupported_keys_do_not_match():
    record = parse_dkim_record(f"v=DKIM1; k=rsa; p={rsa_public(2048)}")
    assert private_key_matches(b"not a pem", record) == (
        False,
        "not a readable PEM private key (PKCS#1 'RSA PRIVATE KEY' or PKCS#8 'PRIVATE KEY')",
    )
    encrypted = pem(rsa_key(2048), password=b"sentinel-passphrase")
    assert private_key_matches(encrypted, record) == (False, "the private key is encrypted (give an unencrypted PEM)")
    assert private_key_matches(pem(rsa_key(2048)), parse_dkim_record("v=DKIM1; p=")) == (
        False,
        "the record is revoked (empty p=)",
    )
    ok, reason = private_key_matches(pem(ec.generate_private_key(ec.SECP256R1())), record)
    assert not ok and "not RSA or Ed25519" in reason
    ok, reason = private_key_matches(pem(rsa_key(2048)), parse_dkim_record("v=DKIM1; k=rsa; p=AAAA"))
    assert not ok and reason == "the record's p= is not a usable key"


# ---- generation and rendering


@pytest.mark.parametrize(
    ("algorithm", "header", "bits"), [("rsa", b"RSA PRIVATE KEY", 2048), ("ed25519", b"PRIVATE KEY", 256)]
)
def test_generated_keys_parse_match_and_use_stalwarts_pem_forms(algorithm, header, bits):
    private, value = generate_key(algorithm)
    assert private.startswith(b"-----BEGIN " + header + b"-----")
    assert value.startswith(f"v=DKIM1; k={algorithm}; p=")
    record = parse_dkim_record(value)
    assert record.problems == [] and record.warnings == [] and record.bits == bits
    assert key_strength(record)[0] == "ok"
    assert private_key_matches(private, record)[0]
    # the record's p= is SubjectPublicKeyInfo for RSA (RFC 6376) and the raw key for Ed25519 (RFC 8463)
    loaded = serialization.load_pem_private_key(private, None).public_key()
    expected = loaded.public_bytes(DER, SPKI) if algorithm == "rsa" else raw_bytes(loaded)
    assert record.public_key == expected


def raw_bytes(public) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_generate_key_refuses_unknown_algorithms():
    with pytest.raises(ValueError, match="unknown DKIM key algorithm 'dsa'"):
        generate_key("dsa")


def test_txt_strings_split_on_bytes_never_inside_a_character():
    assert txt_strings("") == [""]
    assert txt_strings("a" * 255) == ["a" * 255]
    assert txt_strings("a" * 256) == ["a" * 255, "a"]
    # 254 ASCII bytes, then a 2-byte character that would straddle the boundary: it moves to the next string
    parts = txt_strings("a" * 254 + "\u00e9" + "b")
    assert parts == ["a" * 254, "\u00e9b"]
    euro = txt_strings("\u20ac" * 100)  # 3 bytes each: 85 fit in 255 bytes
    assert [len(p.encode()) for p in euro] == [255, 45]
    assert "".join(euro) == "\u20ac" * 100


@given(st.text(max_size=900))
def test_txt_strings_always_rejoin_and_fit(value):
    parts = txt_strings(value)
    assert "".join(parts) == value
    assert all(len(p.encode("utf-8")) <= 255 for p in parts)


def test_zone_line_is_absolute_and_quotes_each_string():
    _, value = generate_key("rsa")
    line = zone_line("202611r._domainkey.example.com", value, 3600)
    assert line.startswith('202611r._domainkey.example.com. 3600 IN TXT ( "v=DKIM1; k=rsa; p=')
    assert line.endswith('" )') and line.count('" "') == 1
    assert (
        zone_line("s._domainkey.example.com.", "v=DKIM1; p=", None) == 's._domainkey.example.com. IN TXT "v=DKIM1; p="'
    )
    assert zone_line("x.example.", 'a"b\\c') == 'x.example. IN TXT "a\\"b\\\\c"'


WHEN = datetime.date(2026, 11, 3)


@pytest.mark.parametrize(
    ("template", "algorithm", "expected"),
    [
        ("{yyyymm}r", "rsa", "202611r"),
        ("{yyyymm}e", "ed25519", "202611e"),
        ("v1-{algorithm}-{yyyymmdd}", "ed25519", "v1-ed25519-20261103"),
        ("{yyyy}.{mm}.{dd}", "rsa", "2026.11.03"),
        ("static", "rsa", "static"),
    ],
)
def test_render_selector(template, algorithm, expected):
    assert render_selector(template, algorithm, WHEN) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{yyyymm}{hash}", "unknown placeholder {hash}"),
        ("-{yyyymm}", "not a valid DKIM selector"),
        ("a b", "not a valid DKIM selector"),
        ("a..b", "not a valid DKIM selector"),
        ("x" * 64, "not a valid DKIM selector"),
        ("", "not a valid DKIM selector"),
        ("{yyyymm}/r", "not a valid DKIM selector"),
    ],
)
def test_render_selector_refuses_what_is_not_a_selector(template, message):
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        render_selector(template, "rsa", WHEN)


# ---- properties


@settings(max_examples=300)
@given(st.text(max_size=300) | st.text(alphabet="vkpths=;: \t\r\nDKIM1rsaed25519yABC+/", max_size=120))
def test_the_parser_never_raises_and_always_judges(text):
    record = parse_dkim_record(text)
    assert record.raw == text
    status, reason = key_strength(record)
    assert status in ("ok", "warn", "fail") and reason and "\n" not in reason
    if status == "ok":
        assert record.usable


TAG_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: n not in {"v", "k", "p", "h", "s", "t"}
)
VALUE_CHARS = "".join(c for c in string.printable if 0x21 <= ord(c) <= 0x7E and c != ";")
TAG_VALUES = st.text(alphabet=VALUE_CHARS, min_size=1, max_size=20)
FWS = st.sampled_from(["", " ", "\t", "\r\n ", "  "])


@st.composite
def records(draw):
    """A valid key record built from parts, with random folding white space around tags."""
    algorithm = draw(st.sampled_from(["rsa", "ed25519"]))
    p = rsa_public(1024) if algorithm == "rsa" else b64(draw(st.binary(min_size=32, max_size=32)))
    extra = draw(st.dictionaries(TAG_NAMES, TAG_VALUES, max_size=3))
    tags = {"v": "DKIM1", "k": algorithm, **extra, "p": p}
    if draw(st.booleans()):
        tags["t"] = "y"
    specs = [f"{draw(FWS)}{name}{draw(FWS)}={draw(FWS)}{value}{draw(FWS)}" for name, value in tags.items()]
    return tags, ";".join(specs) + draw(st.sampled_from(["", ";", "; "]))


@settings(max_examples=150, deadline=None)
@given(records())
def test_generated_records_round_trip(case):
    tags, text = case
    record = parse_dkim_record(text)
    assert record.problems == []
    assert record.tags == tags
    assert record.key_type == tags["k"] and record.testing == (tags.get("t") == "y")
    assert record.public_key == base64.b64decode(tags["p"])
    assert record.fingerprint == key_fingerprint(tags["k"], tags["p"]) is not None
