"""The README's capability table and docs/reference.md are what the code generates (no drift)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import reference_docs

from spine_comms.core.registry import load_registry


def test_the_readme_table_is_the_generated_one():
    readme = reference_docs.README.read_text(encoding="utf-8")
    assert readme == reference_docs.readme_text(readme), "run scripts/reference_docs.py"


def test_the_command_reference_is_the_generated_one():
    shipped = reference_docs.REFERENCE.read_text(encoding="utf-8")
    assert shipped == reference_docs.reference_text(), "run scripts/reference_docs.py"


def test_every_capability_has_a_section_with_its_options_and_contracts():
    text = reference_docs.reference_text()
    for cap_id in load_registry().capabilities:
        section = text.split(f"### `{cap_id}`\n", 1)[1].split("\n### ", 1)[0]
        assert "- **Safety:**" in section and "- **Contracts:**" in section and "- **Options:**" in section
    assert "`--selector`" in text.split("### `dkim.check`", 1)[1].split("### ", 1)[0]


def test_check_ids_follow_calls_helpers_and_methods():
    registry = load_registry()
    ids = reference_docs.check_ids(registry.get("dns.mail.status"))
    # Through a check-making helper function (dns.mx.present) and a method (`out.add("dns.spf.syntax")`).
    assert {"dns.mx.present", "dns.spf.syntax", "dns.dmarc.policy"} <= set(ids), ids
    assert not any(i.startswith(("calendar.", "stack.")) for i in ids)
    # A literal in the capability's own module.
    assert "dns.dkim.private_key" in reference_docs.check_ids(registry.get("dkim.check"))


def test_a_stale_table_is_caught(tmp_path):
    readme = reference_docs.README.read_text(encoding="utf-8")
    stale = readme.replace("| `dkim.check` |", "| `dkim.check` (old) |", 1)
    assert reference_docs.readme_text(stale) == readme
    assert reference_docs.readme_text(stale) != stale
