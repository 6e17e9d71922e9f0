"""What the Stalwart adapter hands back, the same for both API forms."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from spine_comms.core.outcomes import FailureKind, ProtocolFailure

ALGORITHMS = ("rsa-sha256", "ed25519-sha256")
# 0.16 stages, and two 0.15 answers: "unused" (auth.dkim.sign never names the signature's id, so it
# never signs) and "undetermined" (the rule is an expression this cannot evaluate).
STAGES = ("active", "pending", "retiring", "retired", "unused", "undetermined")
ERROR_KINDS = ("unreachable", "auth", "api", "not_found", "unsupported")


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    algorithm: str  # "rsa-sha256" | "ed25519-sha256"
    public_key: str  # base64, as it would appear in the DNS p= tag
    stage: str  # one of STAGES
    signature_id: str | None = None  # 0.15: the settings id (rsa-<domain> ...); 0.16: the object id
    note: str = ""  # why the stage is what it is, where that is not obvious

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DnsRecord:
    type: str
    name: str  # lower case, no trailing dot
    value: str  # TXT: one unsplit string without quotes; MX: "10 mail.example.com" (no trailing dot)

    def to_dict(self) -> dict:
        return asdict(self)


_FAILURE_KINDS = {
    "unreachable": FailureKind.UNREACHABLE,
    "auth": FailureKind.CREDENTIALS_REFUSED,
    "unsupported": FailureKind.UNSUPPORTED,
}


class StalwartError(ProtocolFailure):
    """The server could not be asked, refused us, or answered with an error.

    `kind` is one of ERROR_KINDS; `failure_kind` the outcome vocabulary's name (`failure` refines it:
    a timeout or an untrusted certificate are `unreachable` to this adapter's callers).
    Messages name the URL and the account, never the secret.
    """

    def __init__(self, kind: str, message: str, *, status: int | None = None, evidence=None,
                 failure: FailureKind | None = None):  # fmt: skip
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown StalwartError kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.failure_kind = failure or _FAILURE_KINDS.get(kind, FailureKind.PROTOCOL_ERROR)
        self.message = message
        self.status = status
        self.evidence = evidence


def algorithm_name(algorithm: str) -> str:
    """'rsa' or 'rsa-sha256' -> 'rsa-sha256'; the same for ed25519. Anything else is unsupported."""
    name = algorithm.strip().lower()
    name = name if name.endswith("-sha256") else f"{name}-sha256"
    if name not in ALGORITHMS:
        raise StalwartError("unsupported", f"unknown DKIM algorithm {algorithm!r} (rsa-sha256 or ed25519-sha256)")
    return name


def same_public_key(one: str, other: str) -> bool:
    """Whether two DKIM p= values hold the same key.

    Stalwart publishes RSA keys as PKCS#1 (MIIBCg...), most other tools as SubjectPublicKeyInfo
    (MIIBIj...): the same key, two encodings. Ed25519 keys are the raw 32 bytes either way.
    """
    one, other = "".join(one.split()), "".join(other.split())
    if one == other:
        return True
    numbers = [_rsa_numbers(value) for value in (one, other)]
    return None not in numbers and numbers[0] == numbers[1]


def _rsa_numbers(value: str) -> tuple[int, int] | None:
    import base64
    import binascii

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        der = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    loaders = (
        lambda: serialization.load_der_public_key(der),
        lambda: serialization.load_pem_public_key(
            b"-----BEGIN RSA PUBLIC KEY-----\n" + base64.encodebytes(der) + b"-----END RSA PUBLIC KEY-----\n"
        ),
    )
    for load in loaders:
        try:
            key = load()
        except (ValueError, TypeError):
            continue
        if isinstance(key, rsa.RSAPublicKey):
            numbers = key.public_numbers()
            return numbers.n, numbers.e
    return None
