"""Receipts a reader can trust: sealed, chained, optionally signed; a forgery fails D912 and D902.

Roots here live outside tmp_path (tmp_path_factory): the tests leave forged receipts behind on
purpose, and every receipt under tmp_path is audited as genuine after each test.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from spine_comms.contracts.verify import VerifyContract
from spine_comms.core.context import GlobalOptions
from spine_comms.core.receipt_chain import CHAIN_FILE, read_chain
from spine_comms.core.receipt_seal import SIGNING_KEY_ENV, VERIFY_KEY_ENV, ReceiptVerifier, document_digest, link_of
from spine_comms.core.receipts import record_run
from spine_comms.core.result import Check, Result, Status
from spine_comms.core.root import Root
from spine_comms.core.runner import execute
from spine_comms.core.secrets import Redactor, Secrets
from spine_comms.verify.builtin import receipts_valid
from spine_comms.verify.evaluate import receipt_gate
from spine_comms.verify.gates import DEFAULT_GATES

GATES = VerifyContract.model_validate(yaml.safe_load(DEFAULT_GATES.read_text()))
D902, D912 = GATES.gate("D902"), GATES.gate("D912")


@pytest.fixture
def scratch(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("sealed") / "root"
    (base / "bindings").mkdir(parents=True)
    return base


def run(root: Path, capability: str = "mailroom.status", status: Status = Status.OK, *, env=None, json_out=True,
        argv: list[str] | None = None) -> tuple[int, str, str, Path]:  # fmt: skip
    out, err = io.StringIO(), io.StringIO()

    def function(ctx):
        return Result(data={"answer": 42}, checks=[Check(id="t.only", status=status, detail="as told")])

    code = execute(
        capability=capability, safety="read-only", approval="auto", function=function, kwargs={},
        options=GlobalOptions(root=str(root), json=json_out), argv=argv or ["spine-comms", capability],
        env=env or {}, stdout=out, stderr=err,
    )  # fmt: skip
    printed = out.getvalue()
    receipt = json.loads(printed)["receipt"] if json_out else None
    return code, printed, err.getvalue(), Path(receipt) if receipt else Path()


def d912(root: Path, env: dict | None = None, monkeypatch=None):
    return receipts_valid(D912, Root(root, "project"))


def test_real_receipts_pass_d912_and_each_carries_its_seal(scratch):
    _, _, _, first = run(scratch)
    _, _, _, second = run(scratch, "capabilities.verify", Status.FAIL)
    result = d912(scratch)
    assert result.status == "PASS", result.detail
    assert "2 spine-comms capabilities" in result.detail
    one, two = (json.loads((d / "receipt.json").read_text())["integrity"] for d in (first, second))
    assert one["previous"] == "0" * 64 and two["previous"] == one["link"]
    assert one["output_sha256"] == hashlib.sha256((first / "output.txt").read_bytes()).hexdigest()
    assert one["receipt_md_sha256"] == hashlib.sha256((first / "receipt.md").read_bytes()).hexdigest()
    lines = (scratch / "receipts/sessions" / CHAIN_FILE).read_text().splitlines()
    assert [json.loads(line)["link"] for line in lines] == [one["link"], two["link"]]
    assert f"| receipt.json | `{one['document_sha256']}` |" in (first / "receipt.md").read_text()


def _edit_json(directory: Path, **changes) -> None:
    doc = json.loads((directory / "receipt.json").read_text())
    doc.update(changes)
    doc["envelope"]["status"] = doc["status"]
    (directory / "receipt.json").write_text(json.dumps(doc, indent=2))


def _recompute_seal(directory: Path) -> None:
    """What a forger who read this project's code does: edit, then recompute every digest."""
    doc = json.loads((directory / "receipt.json").read_text())
    doc["status"], doc["exit_code"] = "ok", 0
    doc["envelope"]["data"]["answer"] = 43
    seal = doc["integrity"]
    seal["document_sha256"] = document_digest(doc)
    seal["link"] = link_of(seal)
    (directory / "receipt.json").write_text(json.dumps(doc))


def _hand_written_md(directory: Path) -> None:
    directory = directory.with_name(directory.name.replace("-0", "-9", 1))  # a newer run key
    directory.mkdir()
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    (directory / "receipt.md").write_text(
        f"# Receipt: {directory.name[1:]}\n\n| Field | Value |\n|-------|-------|\n"
        f"| Run ID | `{directory.name[1:]}` |\n"
        f"| Capability | `{directory.name.split('__')[1]}` |\n| Status | done |\n| Exit Code | 0 |\n"
        f"| Generated | {stamp} |\n"
        "| Model | local (capability) |\n| Context | read-only |\n\n## Inputs\n\n## Outputs\n"
    )


def _minimal_json(directory: Path) -> None:
    newer = directory.with_name(directory.name.replace("-0", "-9", 1))
    newer.mkdir()
    doc = json.loads((directory / "receipt.json").read_text())
    doc.pop("integrity")
    doc["run_key"] = newer.name[1:]
    (newer / "receipt.json").write_text(json.dumps(doc))


def _copied(directory: Path) -> None:
    shutil.copytree(directory, directory.with_name(directory.name.replace("-0", "-9", 1)))


def _chain_cut(directory: Path) -> None:
    chain = directory.parent / CHAIN_FILE
    chain.write_text("".join(line for line in chain.read_text().splitlines(keepends=True)
                             if directory.name[1:] not in line))  # fmt: skip


def _md_says_done(directory: Path) -> None:
    md = directory / "receipt.md"
    md.write_text(md.read_text().replace("| Status | failed |", "| Status | done |"))


FORGERIES = {
    "an error edited to ok": (lambda d: _edit_json(d, status="ok", exit_code=0), "receipt.json was changed"),
    "receipt.md edited": (_md_says_done, "receipt.md is not the one"),
    "output.txt edited": (lambda d: (d / "output.txt").write_text("all good\n"), "output.txt is not the one"),
    "a hand-written receipt.md": (_hand_written_md, "no receipt.json"),
    "a minimal receipt.json": (_minimal_json, "carries no seal"),
    "a copied receipt": (_copied, "copied or renamed"),
    "digests recomputed": (_recompute_seal, "the receipt chain records another seal"),
    "the chain's line removed": (_chain_cut, "not in the receipt chain"),
}  # fmt: skip


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_each_forgery_fails_d912_and_d902_naming_the_receipt(scratch, forgery):
    edit, words = FORGERIES[forgery]
    run(scratch, "mailroom.status")
    _, _, _, failed = run(scratch, "mailroom.status", Status.ERROR)
    run(scratch, "mail.auth.probe", Status.ERROR, argv=["spine-comms", "mail.auth.probe"])
    probe = next((scratch / "receipts/sessions").glob("R*__mail.auth.probe__*"))
    assert d912(scratch).status == "PASS"
    edit(failed)
    result = d912(scratch)
    assert result.status == "FAIL" and words in result.detail, result.detail
    assert "mailroom.status: RCAP-" in result.detail

    edit(probe)
    gate = receipt_gate(D902, Root(scratch, "project"), datetime.now(UTC))
    assert gate.status == "FAIL" and "refused" in gate.detail and words in gate.detail, gate.detail


def test_a_broken_chain_is_named(scratch):
    for _ in range(3):
        run(scratch)
    chain = scratch / "receipts/sessions" / CHAIN_FILE
    lines = chain.read_text().splitlines(keepends=True)
    chain.write_text(lines[0] + lines[2])  # the middle run's line removed
    assert read_chain(scratch / "receipts/sessions").breaks[0].startswith(f"{CHAIN_FILE} line 2 (")
    result = d912(scratch)
    assert result.status == "FAIL" and "receipt chain: " in result.detail and "does not link" in result.detail


def test_receipts_of_other_tools_are_not_judged(scratch):
    run(scratch)
    other = scratch / "receipts/sessions/RCAP-20990101-000000__spine.verify__Rabcd1"
    other.mkdir()
    (other / "receipt.md").write_text("| Run ID | `x` |\n| Status | done |\n")
    result = d912(scratch)
    assert result.status == "PASS" and "1 other capability' receipts not judged" in result.detail


# ---- under the spine's runner ---------------------------------------------------------------------


def spine_run(root: Path, status: Status, *, md_status: str | None = None, output: str | None = None) -> Path:
    run_key = f"CAP-{datetime.now():%Y%m%d-%H%M%S}__mailroom.status__Rspine{status.value}"
    code, printed, _, directory = run(root, status=status, env={"SPINE_CAP_RUN_KEY": run_key})
    assert [p.name for p in directory.iterdir()] == ["receipt.json"]  # the runner writes the rest
    text = output if output is not None else f"Executing...\nstderr line\n{printed}spine-comms: x\n"
    (directory / "output.txt").write_text(text)
    sha = hashlib.sha256(text.encode()).hexdigest()
    (directory / "receipt.md").write_text(
        f"# Receipt: {run_key}\n\n| Field | Value |\n|-------|-------|\n| Run ID | `{run_key}` |\n"
        f"| Capability | `mailroom.status` |\n| Status | {md_status or ('done' if code == 0 else 'failed')} |\n"
        f"| Exit Code | {code} |\n| Generated | x |\n\n## Outputs\n\n| File | Hash |\n|------|------|\n"
        f"| output.txt | `{sha}` |\n\n---\n_Receipt written by ops cap_\n"
    )
    return directory


def test_under_the_spines_runner_its_files_must_agree_with_the_sealed_receipt_json(scratch):
    directory = spine_run(scratch, Status.FAIL)
    seal = json.loads((directory / "receipt.json").read_text())["integrity"]
    assert seal["receipt_md_sha256"] is None and seal["output_sha256"] is None and seal["ledger_row_sha256"] is None
    assert d912(scratch).status == "PASS", d912(scratch).detail

    (directory / "receipt.md").write_text((directory / "receipt.md").read_text().replace("| failed |", "| done |"))
    assert "receipt.md says done (exit 1) but the run ended fail" in d912(scratch).detail
    shutil.rmtree(directory)

    spine_run(scratch, Status.OK, output='Executing...\n{"status": "ok"}\n')  # not what the run printed
    assert "output.txt does not hold what the run printed" in d912(scratch).detail


# ---- signing --------------------------------------------------------------------------------------


def _keypair(where: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private, public = where / f"{name}.pem", where / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    return private, public


def test_signed_receipts_verify_with_the_key_and_nothing_else(scratch, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys")
    private, public = _keypair(keys, "op")
    _, other_public = _keypair(keys, "other")
    signing = {SIGNING_KEY_ENV: f"file:{private}"}
    _, _, _, signed = run(scratch, env=signing)
    seal = json.loads((signed / "receipt.json").read_text())["integrity"]
    assert seal["signature"]["algorithm"] == "ed25519" and len(seal["signature"]["key_id"]) == 16
    pem = private.read_text().strip().splitlines()[1]
    assert not any(pem in p.read_text() for p in scratch.rglob("*") if p.is_file())

    receipts = scratch / "receipts/sessions"
    assert ReceiptVerifier(receipts, {VERIFY_KEY_ENV: f"file:{public}"}).problems(signed) == []
    assert ReceiptVerifier(receipts, signing).problems(signed) == []  # the public half of the signing key
    wrong = ReceiptVerifier(receipts, {VERIFY_KEY_ENV: f"file:{other_public}"}).problems(signed)
    assert wrong and "not the configured key" in wrong[0]

    # A forger recomputes digests, link and the chain's line: only the signature gives them away.
    _recompute_seal(signed)
    doc = json.loads((signed / "receipt.json").read_text())
    chain = receipts / CHAIN_FILE
    chain.write_text(chain.read_text().replace(seal["link"], doc["integrity"]["link"]))
    assert ReceiptVerifier(receipts, {}).problems(signed) == []  # without a key: not detectable
    forged = ReceiptVerifier(receipts, {VERIFY_KEY_ENV: f"file:{public}"}).problems(signed)
    assert forged == [f"the signature does not verify with key {seal['signature']['key_id']}"]

    _, _, _, unsigned = run(scratch)
    problems = ReceiptVerifier(receipts, {VERIFY_KEY_ENV: f"file:{public}"}).problems(unsigned)
    assert problems and problems[0].startswith("unsigned, and receipts must be signed with key")


def test_a_signing_key_inside_the_root_is_not_used(scratch):
    private, _ = _keypair(scratch, "in-root")
    _, _, err, directory = run(scratch, env={SIGNING_KEY_ENV: f"file:{private}"})
    seal = json.loads((directory / "receipt.json").read_text())["integrity"]
    assert seal["signature"] is None and "inside the root" in seal["signing_problem"]
    assert "not signed" in err and "inside the root" in err
    _, _, err, _ = run(scratch, env={SIGNING_KEY_ENV: "env:NOT_SET_ANYWHERE"})
    assert "not signed" in err and "NOT_SET_ANYWHERE is not set" in err


# ---- many writers at once -------------------------------------------------------------------------


def _write_many(args: tuple[str, int]) -> None:
    base, worker = Path(args[0]), args[1]
    for n in range(5):
        key = f"CAP-20300101-0000{worker:02d}__mailroom.status__Rw{worker}n{n}"
        doc = {"run_key": key, "capability": "mailroom.status", "status": "ok", "exit_code": 0,
               "finished_at": "2030-01-01T00:00:00Z"}  # fmt: skip
        record_run(base / "receipts/sessions", doc, output_txt="", printed="x", spine_runner=True, ledger=None,
                   ledger_row=None, secrets=Secrets(Redactor(), {}), root=base)  # fmt: skip


def test_parallel_writers_keep_one_unbroken_chain(scratch):
    with multiprocessing.get_context("fork").Pool(6) as pool:
        pool.map(_write_many, [(str(scratch), w) for w in range(6)])
    chain = read_chain(scratch / "receipts/sessions")
    assert len(chain.entries) == 30 and chain.breaks == []
    reader = ReceiptVerifier(scratch / "receipts/sessions", {})
    for directory in (scratch / "receipts/sessions").glob("R*"):
        assert reader.problems(directory) == [], directory
