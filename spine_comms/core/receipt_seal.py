"""The seal that ties a receipt to the run that wrote it, and the check every reader makes.

Each receipt.json carries `integrity`: the digests of its own document (everything but `integrity`,
in canonical JSON), of receipt.md and output.txt, of what the run printed and of the ledger row it
wrote, and the link of the run before it (receipt_chain.py). The digest of all that is the run's
`link`, written to the chain. With a signing key configured (SIGNING_KEY_ENV, a secret reference
held outside the root) the seal is also signed with Ed25519; readers that know the public key
(VERIFY_KEY_ENV, or the signing key itself) refuse a receipt without a good signature.

Under the spine's runner (SPINE_CAP_RUN_KEY), receipt.md and output.txt are the runner's and do not
exist yet when receipt.json is written: their digests are null, and a reader instead checks that
receipt.md's run id, exit code and status agree with receipt.json, that output.txt has the hash
receipt.md records for it, and that output.txt holds exactly what the run printed.

What a reader finds wrong is a list of one-line problems; no problem means the receipt is the one
the run wrote (and, signed, that someone holding the key wrote it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spine_comms.core.receipt_chain import Chain, read_chain
from spine_comms.core.secrets import Redactor, Secrets

SEAL_VERSION = 1
SIGNING_KEY_ENV = "SPINE_COMMS_RECEIPT_SIGNING_KEY"
VERIFY_KEY_ENV = "SPINE_COMMS_RECEIPT_VERIFY_KEY"
SEAL_FIELDS = ("version", "run_key", "document_sha256", "receipt_md_sha256", "output_sha256", "printed_sha256",
               "printed_bytes", "ledger_row_sha256", "previous")  # fmt: skip
MD_FIELD = r"\|\s*{field}\s*\|\s*`?([^`|]+)`?\s*\|"  # the spine's receipts-index-build regex
_MD_OUTPUT = re.compile(r"^\|\s*output\.txt\s*\|\s*`?([0-9a-f]{64})`?\s*\|", re.MULTILINE)


def md_field(text: str, name: str) -> str:
    match = re.search(MD_FIELD.format(field=re.escape(name)), text)
    return match.group(1).strip() if match else ""


def canonical(value: Any) -> bytes:
    """The bytes a digest is taken over: sorted keys, no spaces, after a JSON round trip (so a Path
    or a tuple digests as what a reader loads back)."""
    plain = json.loads(json.dumps(value, default=str))
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def document_digest(document: dict[str, Any]) -> str:
    return sha256_hex(canonical({k: v for k, v in document.items() if k != "integrity"}))


def make_seal(document: dict[str, Any], *, previous: str, receipt_md: str | None, output_txt: str | None,
              printed: str, ledger_row: str | None) -> dict[str, Any]:  # fmt: skip
    return {
        "version": SEAL_VERSION,
        "run_key": document["run_key"],
        "document_sha256": document_digest(document),
        "receipt_md_sha256": sha256_hex(receipt_md) if receipt_md is not None else None,
        "output_sha256": sha256_hex(output_txt) if output_txt is not None else None,
        "printed_sha256": sha256_hex(printed),
        "printed_bytes": len(printed.encode("utf-8")),
        "ledger_row_sha256": sha256_hex(ledger_row) if ledger_row is not None else None,
        "previous": previous,
    }


def link_of(seal: dict[str, Any]) -> str:
    return sha256_hex(canonical({k: seal.get(k) for k in SEAL_FIELDS}))


# Keys ------------------------------------------------------------------------------------------


@dataclass
class Signer:
    key: Any  # Ed25519PrivateKey
    key_id: str

    def sign(self, seal: dict[str, Any]) -> dict[str, str]:
        value = self.key.sign(canonical({k: seal.get(k) for k in SEAL_FIELDS}))
        return {"algorithm": "ed25519", "key_id": self.key_id, "value": base64.b64encode(value).decode()}


@dataclass
class VerifyKey:
    """What readers check signatures with: a public key, none configured, or why it is unusable."""

    key: Any = None  # Ed25519PublicKey
    key_id: str | None = None
    problem: str | None = None


def key_id(public: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_hex(raw)[:16]


def _private_key(text: str) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
    else:
        key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def _public_key(text: str) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
    elif text.startswith("ssh-ed25519 "):
        key = serialization.load_ssh_public_key(text.encode())
    else:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def _inside(ref: str, root: Path | None) -> bool:
    if root is None or not ref.startswith("file:"):
        return False
    return Path(ref[5:]).expanduser().resolve().is_relative_to(root.resolve())


def load_signer(secrets: Secrets, root: Path | None) -> tuple[Signer | None, str | None]:
    """The signer the operator configured, or none; a key that is configured but unusable is a
    problem to report (the receipt is then written unsigned, and readers with the key refuse it)."""
    ref = secrets.env.get(SIGNING_KEY_ENV, "").strip()
    if not ref:
        return None, None
    if _inside(ref, root):
        return None, (f"{SIGNING_KEY_ENV} names a file inside the root: anyone who can write receipts could "
                      "read it and sign; keep the key outside the root")  # fmt: skip
    try:
        key = _private_key(secrets.resolve(ref, what="receipt signing key").value)
    except Exception as exc:  # SecretError, ValueError, cryptography's errors: all say "unusable"
        return None, f"{SIGNING_KEY_ENV}: unusable: {getattr(exc, 'message', None) or exc.__class__.__name__}"
    return Signer(key, key_id(key.public_key())), None


def load_verify_key(env: dict[str, str], root: Path | None = None) -> VerifyKey:
    """VERIFY_KEY_ENV (a reference to the public key), else the public half of the signing key."""
    secrets = Secrets(Redactor(), env, root)
    public_ref = env.get(VERIFY_KEY_ENV, "").strip()
    try:
        if public_ref:
            key = _public_key(secrets.resolve(public_ref, what="receipt verify key").value)
        elif env.get(SIGNING_KEY_ENV, "").strip():
            signer, problem = load_signer(secrets, root)
            if signer is None:
                return VerifyKey(problem=problem)
            key = signer.key.public_key()
        else:
            return VerifyKey()
    except Exception as exc:
        name = VERIFY_KEY_ENV if public_ref else SIGNING_KEY_ENV
        return VerifyKey(problem=f"{name}: unusable: {getattr(exc, 'message', None) or exc.__class__.__name__}")
    return VerifyKey(key, key_id(key))


# Reading -----------------------------------------------------------------------------------------


def seal_problems(directory: Path, chain: Chain, verify: VerifyKey) -> list[str]:
    """Why this receipt directory is not what a spine-comms run wrote; empty when it is."""
    doc_path = directory / "receipt.json"
    if not doc_path.is_file():
        return ["no receipt.json: not written by a spine-comms run (hand-written, or another tool's)"]
    try:
        document = json.loads(doc_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"receipt.json unreadable: {exc.__class__.__name__}"]
    if not isinstance(document, dict):
        return ["receipt.json is not a JSON object"]
    integrity = document.get("integrity")
    if not isinstance(integrity, dict):
        return ["receipt.json carries no seal: hand-written, or written before receipts were sealed"]
    problems = []
    if document.get("run_key") != directory.name[1:] or integrity.get("run_key") != document.get("run_key"):
        problems.append(f"run key {document.get('run_key')!r} is not its directory's: copied or renamed")
    if integrity.get("document_sha256") != document_digest(document):
        problems.append("receipt.json was changed after the run wrote it (its digest does not match)")
    link = link_of(integrity)
    if integrity.get("link") != link:
        problems.append("the seal was changed after the run wrote it (its link does not match)")
    problems += _file_problems(directory, document, integrity)
    entry = chain.find(str(document.get("run_key")))
    if entry is None:
        problems.append(f"not in the receipt chain ({chain.path.name}): no run wrote it there")
    elif entry["link"] != link or entry["previous"] != integrity.get("previous"):
        problems.append(f"the receipt chain records another seal for this run (line {entry.get('line')})")
    problems += _signature_problems(integrity, verify)
    return problems


def _file_problems(directory: Path, document: dict[str, Any], integrity: dict[str, Any]) -> list[str]:
    md_path, out_path = directory / "receipt.md", directory / "output.txt"
    problems = []
    if integrity.get("receipt_md_sha256") is not None or integrity.get("output_sha256") is not None:
        for path, key in ((md_path, "receipt_md_sha256"), (out_path, "output_sha256")):
            if _digest_of(path) != integrity.get(key):
                problems.append(f"{path.name} is not the one the run wrote (missing or changed)")
        return problems
    # The spine's runner wrote receipt.md and output.txt after the run: they must agree with it.
    if md_path.is_file():
        text = md_path.read_text(encoding="utf-8", errors="replace")
        code = document.get("exit_code")
        status = md_field(text, "Status")
        if md_field(text, "Run ID") != document.get("run_key"):
            problems.append("receipt.md names another run")
        if md_field(text, "Exit Code") != str(code) or (status == "done") != (code == 0):
            problems.append(f"receipt.md says {status or '?'} (exit {md_field(text, 'Exit Code') or '?'}) but the "
                            f"run ended {document.get('status')} (exit {code})")  # fmt: skip
        recorded = _MD_OUTPUT.search(text)
        if recorded and out_path.is_file() and _digest_of(out_path) != recorded.group(1):
            problems.append("output.txt does not have the hash receipt.md records for it")
    if out_path.is_file() and not _holds_printed(out_path.read_bytes(), document, integrity):
        problems.append("output.txt does not hold what the run printed")
    return problems


def _digest_of(path: Path) -> str | None:
    try:
        return sha256_hex(path.read_bytes())
    except OSError:
        return None


def _holds_printed(data: bytes, document: dict[str, Any], integrity: dict[str, Any]) -> bool:
    """The run printed one block, starting a line: the JSON envelope (`{`) or the capability's id."""
    size, want = integrity.get("printed_bytes"), integrity.get("printed_sha256")
    if not isinstance(size, int):
        return False
    heads = (b"{", str(document.get("capability", "")).encode() + b"\n")
    start = 0
    while start <= len(data) - size:
        if data.startswith(heads, start) and sha256_hex(data[start : start + size]) == want:
            return True
        start = data.find(b"\n", start) + 1
        if start == 0:
            break
    return False


def _signature_problems(integrity: dict[str, Any], verify: VerifyKey) -> list[str]:
    if verify.problem:
        return [f"signature not checked: {verify.problem}"]
    if verify.key is None:
        return []
    signature = integrity.get("signature")
    if not isinstance(signature, dict):
        why = integrity.get("signing_problem") or "no signing key was configured for that run"
        return [f"unsigned, and receipts must be signed with key {verify.key_id}: {why}"]
    if signature.get("key_id") != verify.key_id:
        return [f"signed with key {signature.get('key_id')}, not the configured key {verify.key_id}"]
    try:
        verify.key.verify(base64.b64decode(str(signature.get("value")), validate=True),
                          canonical({k: integrity.get(k) for k in SEAL_FIELDS}))  # fmt: skip
    except Exception:  # InvalidSignature, or a value that is not base64
        return [f"the signature does not verify with key {verify.key_id}"]
    return []


class ReceiptVerifier:
    """One reader's view: the chain read once (again when a newer receipt shows up) and the key."""

    def __init__(self, receipts_dir: Path, env: dict[str, str], root: Path | None = None):
        self.chain = read_chain(receipts_dir)
        self.verify_key = load_verify_key(env, root)

    def problems(self, directory: Path) -> list[str]:
        return seal_problems(directory, self.chain, self.verify_key)
