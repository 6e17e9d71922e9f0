"""The hostile corpus through the real pipeline: every nasty message APPENDed to the lab's Dovecot,
then one `poll --enqueue`. Each is enqueued or quarantined with a reason, none stops the batch, and
nothing is written outside the root (the mailroom and its state)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.integration.inbox_lab import checkpoint, folder_result, items, make_root, run
from tests.mailbox_fill import fill_imap, folder_uids

pytestmark = pytest.mark.lab
CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "hostile"


def _files_under(directory: Path) -> set[Path]:
    return {Path(root, name) for root, _, names in os.walk(directory) for name in names}


def test_every_hostile_message_is_enqueued_or_parked_and_none_escapes(lab, lab_root, tmp_path):
    corpus = sorted(p for p in CORPUS.glob("*.eml") if p.stat().st_size > 0)  # IMAP cannot APPEND 0 bytes
    assert len(corpus) >= 40
    folder = f"H{uuid.uuid4().hex[:10]}"
    fill_imap(lab, "sink", folder, [p.read_bytes() for p in corpus], connections=2)
    uids = folder_uids(lab, "sink", folder)
    assert len(uids) == len(corpus)

    # A cap under the corpus's megabyte header, so the quarantine path is taken too.
    root = make_root(tmp_path, lab, lab_root, folders=[folder], policy="  max_message_bytes: 900000")
    outside = tmp_path / "outside"
    outside.mkdir()
    before = _files_under(tmp_path) - _files_under(root)
    # Run from a directory outside the root: a relative path in a hostile name would land here.
    cwd = Path.cwd()
    os.chdir(outside)
    try:
        code, env, _ = run(root, "--enqueue")
    finally:
        os.chdir(cwd)

    result = folder_result(env)
    lanes = items(root)
    queued, parked = len(lanes["queued"]), len(lanes["parked"])
    assert code in (0, 1), env["status"]
    # None stopped the batch: every UID was taken, and the checkpoint reached the last one.
    assert queued + parked == len(corpus), (queued, parked, result)
    assert checkpoint(root, "sink", folder)["last_uid"] == max(uids), result
    # Every parked item says why.
    assert parked >= 1
    for item in lanes["parked"]:
        text = item.read_text()
        assert "## Parked by spine-comms" in text and "\nReasons" in text, item.name
    # No item has a line of mail text that reads as a control line or a heading (grep '^MODE:' finds one
    # mode per item), and text hidden from the mail's reader is in none, but counted where it was.
    hidden_notes = 0
    for item in lanes["queued"] + lanes["parked"]:
        lines = item.read_text().splitlines()
        assert [line for line in lines if line.startswith("MODE:")] == ["MODE: ROUTE"], item.name
        headings = {line for line in lines if line.lstrip().startswith("#")}
        assert headings <= {"## Event: email_received", "## Parked by spine-comms"}, (item.name, headings)
        assert "HIDDEN-ORDER" not in "\n".join(lines), item.name
        hidden_notes += any(line.startswith("**Hidden text:** ") for line in lines)
    assert hidden_notes >= 2  # hidden_html_orders.eml and html_only_script.eml (its <style> hides a <p>)
    # rfc2047_address_spoof.eml: its display name shows the CEO's address; the item says who really sent it.
    spoof = [line for item in lanes["queued"] + lanes["parked"] for line in item.read_text().splitlines()
             if line.startswith("**From:** ") and "attacker@evil.example" in line]  # fmt: skip
    assert spoof == [
        '**From:** "CEO" <ceo@bank.example>, other@bank.example <attacker@evil.example> [the name shows '
        "ceo@bank.example, other@bank.example, but the address is attacker@evil.example]"
    ], spoof
    # Nothing was written outside the root (the corpus names attachments ../, /etc/..., NUL ...).
    after = _files_under(tmp_path) - _files_under(root)
    assert after == before, sorted(after - before)
    assert not any(outside.iterdir())
    for path in _files_under(root):
        assert root.resolve() in path.resolve().parents


def test_a_folder_name_that_looks_like_markup_is_shown_as_written(lab, lab_root, tmp_path):
    """`projects[/]` (and a subject in rich markup) once made communications.inbox.health crash with a
    MarkupError traceback, exit 1 and no receipt; `[ops]` vanished from tables. Shown as written now.
    The lab's Dovecot refuses `/` in a name (its separator is `.`), so the folder carries the tags that
    vanished; `[/]` itself is held by tests/unit/test_human_output.py and the subject here."""
    from tests.cli_process import run_capability
    from tests.integration.test_inbox_poll_lab import _message

    folder = f"projects[ops]{uuid.uuid4().hex[:6]}[bold][example.net]"
    fill_imap(lab, "sink", folder, [_message("<markup.1@example.org>", subject="[bold red]urgent[/] [example.net]")])
    root = make_root(tmp_path, lab, lab_root, folders=[folder],
                     extra="health: {max_heartbeat_age_seconds: 5, max_unprocessed_minutes: 10}")  # fmt: skip
    for args, cap in (((), "communications.inbox.health"), (("--mailbox", "sink"), "communications.inbox.poll")):
        text = run_capability(root, cap, *args, json_out=False, env={"COLUMNS": "80"})
        assert text.code in (0, 1), text.stdout + text.stderr  # a verdict, not a crash (70) or usage (2)
        assert "MarkupError" not in text.stderr and text.stdout.rstrip().splitlines()[-1].startswith("status: ")
        receipt = Path(next(line for line in text.stdout.splitlines() if line.startswith("receipt: "))[9:])
        assert (receipt / "receipt.json").is_file()
        envelope = run_capability(root, cap, *args).envelope
        shown = [c for c in envelope["checks"] if folder in c["detail"] + c["subject"]] or envelope["summary"]
        assert shown, envelope
        if cap == "communications.inbox.health":
            assert folder in text.stdout, text.stdout  # in the table or the summary, whole
        else:
            assert "[bold red]urgent[/] [example.net]" in text.stdout, text.stdout
