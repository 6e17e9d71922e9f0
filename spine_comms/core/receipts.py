"""Receipts, spine-compatible: `receipts/sessions/R<run_key>/` and a ledger row.

Standalone, spine-comms writes receipt.md, output.txt and receipt.json into a
temporary directory and renames it into place, so there is never a receipt
directory without its receipt.md. Under the spine's runner (SPINE_CAP_RUN_KEY
set) the runner writes receipt.md, output.txt and the ledger row; spine-comms
adopts its run key and adds only receipt.json.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import string
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from spine_comms.core.atomic import fsync_dir, write_atomic

LEDGER_HEADER = [
    "run_id", "created_at", "started_at", "finished_at", "status",
    "prompt_file", "result_file", "error", "context_used",
]  # fmt: skip
RUN_KEY_RE = re.compile(r"^CAP-[0-9]{8}-[0-9]{6}__[A-Za-z0-9._-]+__R[A-Za-z0-9]+$")
_MD_FIELD = r"\|\s*{field}\s*\|\s*`?([^`|]+)`?\s*\|"  # the spine's receipts-index-build regex


def new_run_key(capability: str, now_local: datetime) -> str:
    """`CAP-YYYYMMDD-HHMMSS__<capability>__R<random>`, local time like the spine's cap.sh."""
    rand = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    return f"CAP-{now_local:%Y%m%d-%H%M%S}__{capability}__R{rand}"


def receipt_status(exit_code: int) -> str:
    return "done" if exit_code == 0 else "failed"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class ReceiptFiles:
    run_key: str
    markdown: str | None  # None when the spine's runner writes it
    output: str | None
    document: dict[str, Any]


def render_markdown(doc: dict[str, Any], output_sha: str, json_sha: str) -> str:
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


def append_ledger(ledger: Path, row: list[str]) -> None:
    """Append one row under an exclusive lock; writes the 9-column header into a new file."""
    ledger.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8", newline="") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            if os.fstat(handle.fileno()).st_size == 0:
                writer.writerow(LEDGER_HEADER)
            # The spine writes these rows with echo, so commas in the error are replaced.
            writer.writerow([cell.replace(",", ";").replace("\n", " ") for cell in row])
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
                match = re.search(_MD_FIELD.format(field=re.escape(name)), text)
                return match.group(1).strip() if match else ""

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
