"""DKIM key records (RFC 6376 §3.6.1, Ed25519 per RFC 8463): parse, judge, generate, publish.

Pure functions, no DNS: `dns.mail.status` and `dkim.check` feed them the TXT text
they resolved, `dkim.keygen` uses them to make a key and the record to publish,
and the Stalwart views compare the server's key with DNS through
`key_fingerprint`, which gives RSA keys one identity whether they are encoded
as SubjectPublicKeyInfo (what RFC 6376 asks for) or bare PKCS#1 (what Stalwart
may publish).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

KNOWN_KEY_TYPES = ("rsa", "ed25519")
ED25519_KEY_BYTES = 32
RSA_OK_BITS = 2048
RSA_MIN_BITS = 1024  # RFC 8301: verifiers must accept 1024, signers should use 2048
TXT_STRING_BYTES = 255

_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
# VALCHAR (%x21-3A / %x3C-7E) runs separated by folding white space.
_TAG_VALUE = re.compile(r"[\x21-\x3a\x3c-\x7e]+([ \t\r\n]+[\x21-\x3a\x3c-\x7e]+)*\Z")
_FWS = " \t\r\n"
_SELECTOR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class DkimKeyRecord:
    raw: str
    tags: dict[str, str]
    version: str | None
    key_type: str | None  # "rsa" | "ed25519" | other, as given (k= absent means rsa)
    public_key: bytes | None  # p= decoded
    bits: int | None  # RSA modulus size; 256 for Ed25519
    testing: bool  # t=y
    revoked: bool  # p= present but empty
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """A verifier could use this key: no problems and not revoked."""
        return not self.problems and not self.revoked and self.public_key is not None

    @property
    def fingerprint(self) -> str | None:
        if self.key_type is None or not self.tags.get("p"):
            return None
        return key_fingerprint(self.key_type, self.tags["p"])


def _split_tags(txt: str, problems: list[str], warnings: list[str]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    segments = txt.split(";")
    for index, segment in enumerate(segments):
        spec = segment.strip(_FWS)
        if not spec:
            # A trailing ";" is allowed by the grammar; an empty spec in the middle is not, but is harmless.
            if index != len(segments) - 1:
                warnings.append("empty tag (';;' or a leading ';')")
            continue
        name, equals, value = spec.partition("=")
        name, value = name.strip(_FWS), value.strip(_FWS)
        if not equals:
            problems.append(f"not a tag=value pair: {_shown(spec)}")
            continue
        if not _TAG_NAME.match(name):
            problems.append(f"bad tag name {_shown(name)} (a letter, then letters, digits or '_')")
            continue
        if value and not _TAG_VALUE.match(value):
            problems.append(f"{name}= holds a character a tag value may not contain (';', control or non-ASCII)")
        pairs.append((name, value))
    return pairs


def _shown(text: str, limit: int = 40) -> str:
    text = text.encode("unicode_escape").decode("ascii")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _decode_base64(value: str) -> bytes | None:
    compact = "".join(value.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def _rsa_public_key(der: bytes) -> rsa.RSAPublicKey | str:
    """The key, or why it is not an RSA key. load_der_public_key takes SPKI and, as a fallback, PKCS#1."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        return "p= is not a DER public key (neither SubjectPublicKeyInfo nor PKCS#1)"
    if not isinstance(key, rsa.RSAPublicKey):
        return f"p= holds a {type(key).__name__.removesuffix('PublicKey') or 'non-RSA'} key, but k= says rsa"
    return key


def parse_dkim_record(txt: str) -> DkimKeyRecord:
    """Read one DKIM key record (the TXT strings already joined). Never raises: problems are listed."""
    problems: list[str] = []
    warnings: list[str] = []
    pairs = _split_tags(txt, problems, warnings)
    tags: dict[str, str] = {}
    for name, value in pairs:
        if name in tags:
            problems.append(f"tag {name}= appears more than once (RFC 6376 §3.2: the record is invalid)")
            continue
        tags[name] = value

    version = tags.get("v")
    if version is not None:
        if pairs[0][0] != "v":
            problems.append("v= must be the first tag")
        if version != "DKIM1":
            problems.append(f"v={_shown(version)} is not DKIM1")
    elif tags:
        warnings.append("no v=DKIM1 (optional, but recommended as the first tag)")

    key_type = tags.get("k", "rsa")
    kind = key_type.lower()
    if kind not in KNOWN_KEY_TYPES:
        problems.append(f"unknown key type k={_shown(key_type)} (verifiers ignore the record; expected rsa or ed25519)")

    public_key, bits, revoked = None, None, False
    if "p" not in tags:
        problems.append("no p= tag (the public key is required)")
    elif not "".join(tags["p"].split()):
        revoked = True
    else:
        public_key = _decode_base64(tags["p"])
        if public_key is None:
            problems.append("p= is not valid base64")
        elif kind == "rsa":
            key = _rsa_public_key(public_key)
            if isinstance(key, str):
                problems.append(key)
            else:
                bits = key.key_size
        elif kind == "ed25519":
            bits = 256
            if len(public_key) != ED25519_KEY_BYTES:
                hint = " (a SubjectPublicKeyInfo? RFC 8463 wants the raw key)" if len(public_key) == 44 else ""
                problems.append(f"ed25519 key is {len(public_key)} bytes, not {ED25519_KEY_BYTES}{hint}")

    hashes = [h.strip(_FWS) for h in tags["h"].split(":")] if "h" in tags else []
    if hashes and "sha256" not in hashes:
        problems.append(f"h={tags['h']} does not allow sha256 (sha1 is forbidden by RFC 8301)")
    unknown_hashes = [h for h in hashes if h not in ("sha1", "sha256")]
    if unknown_hashes:
        warnings.append(f"unknown hash algorithm(s) in h=: {', '.join(unknown_hashes)}")

    if "s" in tags:
        services = [s.strip(_FWS) for s in tags["s"].split(":")]
        if "*" not in services and "email" not in services:
            problems.append(f"s={tags['s']} does not include email or *: the key is not for mail")

    flags = [f.strip(_FWS) for f in tags.get("t", "").split(":") if f.strip(_FWS)]
    testing = "y" in flags
    unknown_flags = [f for f in flags if f not in ("y", "s")]
    if unknown_flags:
        warnings.append(f"unknown flag(s) in t=: {', '.join(unknown_flags)}")
    known = {"v", "g", "h", "k", "n", "p", "s", "t"}
    extra = sorted(set(tags) - known)
    if extra:
        warnings.append(f"unknown tag(s) kept and ignored: {', '.join(extra)}")

    return DkimKeyRecord(
        raw=txt,
        tags=tags,
        version=version,
        key_type=key_type,
        public_key=public_key,
        bits=bits,
        testing=testing,
        revoked=revoked,
        problems=problems,
        warnings=warnings,
    )


def key_refuses(record: DkimKeyRecord, algorithm: str, domain: str, identity: str | None) -> str | None:
    """Why this key may not verify a signature with a=`algorithm`, d=`domain`, i=`identity`, or None.

    The key record's own constraints (RFC 6376 §3.6.1, §6.1.2 step 6-9; RFC 8301; RFC 8463), so a
    verifier that uses this refuses what `dkim.check` calls broken and what a receiver rejects: an
    invalid or revoked record, a key type other than the signature's, a hash the record's h= does not
    list, a service type that is not email, and under t=s an i= in a subdomain of d=."""
    if record.revoked:
        return "key revoked (empty p= in the key record)"
    if record.problems:
        return "the key record is invalid: " + "; ".join(record.problems)
    key_kind, _, hash_name = algorithm.strip().lower().partition("-")
    if hash_name == "sha1":
        return f"a={algorithm}: sha1 signatures are not valid (RFC 8301 §3.1)"
    kind = (record.key_type or "rsa").lower()
    if key_kind != kind:
        return f"the signature is a={algorithm} but the key record says k={record.key_type or 'rsa'}"
    if "h" in record.tags:
        allowed = [h.strip(_FWS).lower() for h in record.tags["h"].split(":")]
        if hash_name not in allowed:
            return f"the key record's h={record.tags['h']} does not allow {hash_name}"
    flags = [f.strip(_FWS) for f in record.tags.get("t", "").split(":")]
    if "s" in flags and identity:
        agent_domain = identity.rpartition("@")[2].strip().rstrip(".").lower()
        if agent_domain != domain.strip().rstrip(".").lower():
            return f"the key record's t=s forbids i={identity} in a subdomain of d={domain}"
    return None


def key_strength(record: DkimKeyRecord) -> tuple[str, str]:
    """("ok" | "warn" | "fail", why): RSA 2048+ ok, 1024-2047 warn, less fail; Ed25519 of 32 bytes ok."""
    if record.revoked:
        return "fail", "revoked (empty p=)"
    if record.problems:
        return "fail", record.problems[0]
    kind = (record.key_type or "").lower()
    if kind == "rsa":
        bits = record.bits or 0
        if bits < RSA_MIN_BITS:
            return "fail", f"RSA {bits} bits, below {RSA_MIN_BITS} (verifiers reject it, RFC 8301)"
        status, reason = ("ok", f"RSA {bits} bits") if bits >= RSA_OK_BITS else (
            "warn", f"RSA {bits} bits, below the recommended {RSA_OK_BITS}"
        )  # fmt: skip
    else:
        status, reason = "ok", f"Ed25519 ({ED25519_KEY_BYTES} bytes)"
    if record.testing:
        return "warn", f"{reason}; t=y (testing: receivers may treat failures as unsigned)"
    return status, reason


def _canonical_key_bytes(key_type: str, public_key: bytes) -> bytes | None:
    kind = key_type.lower()
    if kind == "rsa":
        key = _rsa_public_key(public_key)
        if isinstance(key, str):
            return None
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if kind == "ed25519":
        if len(public_key) == ED25519_KEY_BYTES:
            return public_key
        try:  # a server may hand out the SubjectPublicKeyInfo form; the key is the same
            key = serialization.load_der_public_key(public_key)
        except (ValueError, UnsupportedAlgorithm):
            return None
        if isinstance(key, ed25519.Ed25519PublicKey):
            return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return None


def key_fingerprint(key_type: str, public_key_b64: str) -> str | None:
    """`sha256:<hex>` over the SPKI DER of an RSA key (whatever form it came in) or the raw 32 Ed25519 bytes."""
    decoded = _decode_base64(public_key_b64 or "")
    if not decoded:
        return None
    canonical = _canonical_key_bytes(key_type or "", decoded)
    if canonical is None:
        return None
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _short(fingerprint: str | None) -> str:
    return (fingerprint or "?")[:23]


def private_key_matches(private_pem: bytes, record: DkimKeyRecord) -> tuple[bool, str]:
    """Does this private key belong to the published record? The reason never shows key material."""
    try:
        private = serialization.load_pem_private_key(private_pem, password=None)
    except TypeError:
        return False, "the private key is encrypted (give an unencrypted PEM)"
    except (ValueError, UnsupportedAlgorithm):
        return False, "not a readable PEM private key (PKCS#1 'RSA PRIVATE KEY' or PKCS#8 'PRIVATE KEY')"
    if isinstance(private, rsa.RSAPrivateKey):
        kind = "rsa"
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        kind = "ed25519"
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        return False, f"the private key is {type(private).__name__.removesuffix('PrivateKey')}, not RSA or Ed25519"
    if record.revoked:
        return False, "the record is revoked (empty p=)"
    published = (record.key_type or "").lower()
    if published != kind:
        return False, f"the private key is {kind}, the record is k={record.key_type}"
    if record.public_key is None or _canonical_key_bytes(kind, record.public_key) is None:
        return False, "the record's p= is not a usable key"
    mine = "sha256:" + hashlib.sha256(public).hexdigest()
    theirs = "sha256:" + hashlib.sha256(_canonical_key_bytes(kind, record.public_key)).hexdigest()
    if mine == theirs:
        return True, f"the private key matches the published {kind} key ({_short(theirs)}...)"
    return False, f"the private key's public half ({_short(mine)}...) is not the published key ({_short(theirs)}...)"


def generate_key(algorithm: str) -> tuple[bytes, str]:
    """A new key: (private PEM, TXT value). RSA-2048 as PKCS#1, Ed25519 as PKCS#8, as Stalwart stores them."""
    kind = algorithm.lower()
    if kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_OK_BITS)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raise ValueError(f"unknown DKIM key algorithm {algorithm!r} (rsa or ed25519)")
    return pem, f"v=DKIM1; k={kind}; p={base64.b64encode(public).decode('ascii')}"


def txt_strings(value: str) -> list[str]:
    """Split into TXT character-strings of at most 255 bytes, never inside a UTF-8 character."""
    out: list[str] = []
    current, size = [], 0
    for char in value:
        width = len(char.encode("utf-8"))
        if size + width > TXT_STRING_BYTES:
            out.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    out.append("".join(current))
    return out


def _zone_quoted(text: str) -> str:
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\{ord(char):03d}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def zone_line(name: str, value: str, ttl: int | None = None) -> str:
    """A zone-file TXT line: the name made absolute, the value in 255-byte strings (parenthesised when several)."""
    owner = name if name.endswith(".") else name + "."
    strings = [_zone_quoted(s) for s in txt_strings(value)]
    rdata = strings[0] if len(strings) == 1 else "( " + " ".join(strings) + " )"
    return " ".join([owner, *([str(ttl)] if ttl is not None else []), "IN", "TXT", rdata])


def render_selector(template: str, algorithm: str, when: datetime.date) -> str:
    """Fill a selector template ({yyyy} {mm} {dd} {yyyymm} {yyyymmdd} {algorithm}); ValueError if unusable."""
    values = {
        "yyyy": f"{when.year:04d}",
        "mm": f"{when.month:02d}",
        "dd": f"{when.day:02d}",
        "yyyymm": f"{when.year:04d}{when.month:02d}",
        "yyyymmdd": f"{when.year:04d}{when.month:02d}{when.day:02d}",
        "algorithm": algorithm.lower(),
    }
    unknown = [m for m in _PLACEHOLDER.findall(template) if m not in values]
    if unknown:
        raise ValueError(
            f"selector template {template!r}: unknown placeholder {{{unknown[0]}}} "
            f"(use {', '.join('{' + k + '}' for k in values)})"
        )
    selector = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    if not _SELECTOR.match(selector) or any(not 0 < len(label) <= 63 for label in selector.split(".")):
        raise ValueError(
            f"selector {selector!r} (from template {template!r}) is not a valid DKIM selector: "
            "letters, digits, '_', '-' and '.', starting with a letter, digit or '_', dot-separated labels of 1-63"
        )
    return selector
