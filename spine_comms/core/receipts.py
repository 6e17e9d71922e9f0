"""Receipts, spine-compatible: `receipts/sessions/R<run_key>/` and a ledger row.

Standalone, spine-comms writes receipt.md, output.txt and receipt.json into a
temporary directory and renames it into place, so there is never a receipt
directory without its receipt.md. Under the spine's runner (SPINE_CAP_RUN_KEY
set) the runner writes receipt.md, output.txt and the ledger row; spine-comms
adopts its run key and adds only receipt.json. Either way receipt.json is sealed
and chained (receipt_seal.py, receipt_chain.py) so a reader can tell it from an
edited, copied or hand-written one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import shutil
import string
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from spine_comms.core import receipt_seal
from spine_comms.core.appendfile import append_line, locked_append
from spine_comms.core.atomic import fsync_dir, write_atomic
from spine_comms.core.receipt_chain import chain_writer
from spine_comms.core.secrets import Secrets

LEDGER_HEADER = [
    "run_id", "created_at", "started_at", "finished_at", "status",
    "prompt_file", "result_file", "error", "context_used",
]  # fmt: skip
RUN_KEY_RE = re.compile(r"^CAP-[0-9]{8}-[0-9]{6}__[A-Za-z0-9._-]+__R[A-Za-z0-9]+$")


def new_run_key(capability: str, now_local: datetime) -> str:
    """`CAP-YYYYMMDD-HHMMSS__<capability>__R<random>`, local time like the spine's cap.sh."""
    rand = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    return f"CAP-{now_local:%Y%m%d-%H%M%S}__{capability}__R{rand}"


def receipt_status(exit_code: int) -> str:
    return "done" if exit_code == 0 else "failed"


def sha256_text(text: str) -> str:
    return receipt_seal.sha256_hex(text)


@dataclass
class ReceiptFiles:
    run_key: str
    markdown: str | None  # None when the spine's runner writes it
    output: str | None
    document: dict[str, Any]


def render_markdown(doc: dict[str, Any], output_sha: str, json_sha: str) -> str:
    """The spine's receipt.md; `json_sha` is the digest of receipt.json's document (its seal aside)."""
    inv = doc["invocation"]
    rows = [
        ("Run ID", f"`{doc['run_key']}`"),
        ("Capability", f"`{doc['capability']}`"),
        ("Status", receipt_status(doc["exit_code"])),
        ("Exit Code", str(doc["exit_code"])),
        ("Generated", doc["finished_at"]),
        ("Model", "local (capability)"),
        ("Context", doc["safety"]),
        ("Blocker Reason", "none"),
        ("Result", doc["status"]),
        ("Tool", f"spine-comms {doc['tool']['version']}"),
    ]
    lines = [f"# Receipt: {doc['run_key']}", "", "| Field | Value |", "|-------|-------|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "## Inputs", "", "| Field | Value |", "|-------|-------|"]
    lines.append(f"| Command | `{_cell(' '.join(inv['argv']))}` |")
    lines.append(f"| CWD | `{_cell(inv['cwd'])}` |")
    lines.append(f"| Args | `{_cell(' '.join(inv['argv'][2:]))}` |")
    lines.append(f"| Root | `{_cell(inv['root'])}` ({inv['layout']}) |")
    for contract in doc["contracts"]:
        lines.append(f"| Contract | `{_cell(contract['path'])}` sha256 `{contract['sha256']}` |")
    lines += ["", "## Outputs", "", "| File | Hash |", "|------|------|"]
    lines.append(f"| output.txt | `{output_sha}` |")
    lines.append(f"| receipt.json | `{json_sha}` |")
    lines += ["", "## Timestamps", "", "| Field | Value |", "|-------|-------|"]
    lines += [f"| Start | {doc['started_at']} |", f"| End | {doc['finished_at']} |"]
    if doc.get("error"):
        lines += ["", "## Error", "", _cell(doc["error"]["message"])]
    lines += ["", "---", "_Receipt written by spine-comms_", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("`", "'").replace("\n", " ")


def write_receipt(receipts_dir: Path, files: ReceiptFiles) -> Path:
    final = receipts_dir / f"R{files.run_key}"
    body = json.dumps(files.document, indent=2, default=str) + "\n"
    if files.markdown is None:  # the spine's runner owns the directory and its other files
        write_atomic(final / "receipt.json", body)
        return final
    receipts_dir.mkdir(parents=True, exist_ok=True)
    staging = receipts_dir / f".staging-R{files.run_key}"
    staging.mkdir(mode=0o755)
    try:
        write_atomic(staging / "output.txt", files.output or "")
        write_atomic(staging / "receipt.json", body)
        write_atomic(staging / "receipt.md", files.markdown)
        os.rename(staging, final)
        fsync_dir(receipts_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def ledger_line(row: list[str]) -> str:
    """One ledger row as the spine writes it (with echo, so commas and newlines in a cell are replaced)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([cell.replace(",", ";").replace("\n", " ") for cell in row])
    return buffer.getvalue()


def append_ledger(ledger: Path, row: list[str]) -> None:
    """Append one whole row under an exclusive lock; writes the 9-column header into a new file.
    A torn tail (a full disk, a crash) is closed first, so rows never glue together."""
    with locked_append(ledger) as fd:
        if os.fstat(fd).st_size == 0:
            append_line(fd, ledger, ledger_line(LEDGER_HEADER))
        append_line(fd, ledger, ledger_line(row))


def record_run(
    receipts_dir: Path,
    document: dict[str, Any],
    *,
    output_txt: str,
    printed: str,
    spine_runner: bool,
    ledger: Path | None,
    ledger_row: list[str] | None,
    secrets: Secrets,
    root: Path,
    warn: TextIO | None = None,
) -> Path:
    """Seal, chain and write one run's receipt, then its ledger row (standalone only).

    The chain stays locked from reading the last link until the receipt is in place, so parallel
    runs (verify's gates) chain one after another. `printed` is what the run wrote to stdout."""
    signer, signing_problem = receipt_seal.load_signer(secrets, root)
    if signing_problem:
        print(f"spine-comms: receipt {document['run_key']} not signed: {signing_problem}", file=warn or sys.stderr)
    row_text = ledger_line(ledger_row) if ledger is not None and ledger_row is not None else None
    with chain_writer(receipts_dir) as chain:
        markdown = None
        if not spine_runner:
            json_sha = receipt_seal.document_digest(document)
            markdown = render_markdown(document, sha256_text(output_txt), json_sha)
        seal = receipt_seal.make_seal(document, previous=chain.previous, receipt_md=markdown,
                                      output_txt=None if spine_runner else output_txt, printed=printed,
                                      ledger_row=row_text)  # fmt: skip
        link = receipt_seal.link_of(seal)
        integrity = {**seal, "link": link, "signature": signer.sign(seal) if signer else None}
        if signing_problem:
            integrity["signing_problem"] = signing_problem
        sealed = {**document, "integrity": integrity}
        chain.append(document["run_key"], link, document["finished_at"])
        final = write_receipt(receipts_dir, ReceiptFiles(document["run_key"], markdown, output_txt, sealed))
    if row_text is not None and ledger is not None:
        append_ledger(ledger, ledger_row)
    return final


# Reading ---------------------------------------------------------------------------------------


@dataclass
class ReceiptSummary:
    run_key: str
    capability: str
    status: str
    exit_code: int | None
    generated: str
    directory: Path
    dry_run: bool = False  # a dry run changed nothing, so it proves nothing about the system

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_key": self.run_key,
            "capability": self.capability,
            "status": self.status,
            "exit_code": self.exit_code,
            "generated": self.generated,
            "directory": str(self.directory),
        }


def read_summary(directory: Path) -> ReceiptSummary | None:
    """Summarise one receipt directory from receipt.json, else from the spine's receipt.md."""
    doc_path, md_path = directory / "receipt.json", directory / "receipt.md"
    try:
        if doc_path.is_file():
            doc = json.loads(doc_path.read_text(encoding="utf-8"))
            return ReceiptSummary(
                doc["run_key"], doc["capability"], doc["status"], doc.get("exit_code"),
                doc.get("finished_at", ""), directory, doc.get("dry_run") is True,
            )  # fmt: skip
        if md_path.is_file():
            text = md_path.read_text(encoding="utf-8", errors="replace")

            def field(name: str, text: str = text) -> str:
                return receipt_seal.md_field(text, name)

            code = field("Exit Code")
            return ReceiptSummary(
                field("Run ID") or directory.name[1:], field("Capability"), field("Status"),
                int(code) if code.isdigit() else None, field("Generated"), directory,
            )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def list_receipts(receipts_dir: Path, capability: str | None = None) -> list[ReceiptSummary]:
    """Newest first (by the time in the run key, then by directory mtime)."""
    if not receipts_dir.is_dir():
        return []
    found = []
    for entry in receipts_dir.iterdir():
        if not entry.is_dir() or not entry.name.startswith("R"):
            continue
        if capability and f"__{capability}__" not in entry.name:
            continue
        summary = read_summary(entry)
        if summary and (not capability or summary.capability == capability):
            found.append((entry.name.split("__", 1)[0], entry.stat().st_mtime, summary))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [item[2] for item in found]
