"""core.yaml_roundtrip: edits change only the bytes they must, and refuse rather than corrupt."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
import yaml

from spine_comms.core.errors import ContractError, ExitCode
from spine_comms.core.yaml_roundtrip import RoundTripError, RoundTripYaml

SAMPLES = Path("/work/shared/reference/spine-samples")
GAPS_SAMPLE = SAMPLES / "operational.gaps.excerpt.yaml"
STACK_SAMPLE = SAMPLES / "communications.stack.contract.yaml"


def changed_lines(old: str, new: str) -> list[tuple[str, list[str], list[str]]]:
    """Every changed block as (opcode, old lines, new lines); untouched lines never appear."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return [(tag, a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]


def edit(text: str) -> RoundTripYaml:
    return RoundTripYaml.from_text(text, "t.yaml")


def test_filing_into_the_spine_sample_changes_only_the_entry_and_the_stamp():
    old = GAPS_SAMPLE.read_text()
    doc = edit(old)
    entry = {
        "id": "GAP-OP-849",
        "discovered_by": "LOOP-COMMS-AGENTIC-LAYER-20260223",
        "discovered_at": "2026-03-06",
        "type": "missing-entry",
        "doc": None,
        "description": "CalDAV endpoint not in the stack contract.\nFound by contract.endpoints.sync.\n",
        "severity": "medium",
        "status": "open",
    }
    doc.set_scalar(("updated",), "2026-03-06T10:00:00Z")
    doc.append_item(("gaps",), entry)
    changes = changed_lines(old, doc.text)
    assert changes[0] == ("replace", ['updated: "2026-03-05T06:09:07Z"\n'], ['updated: "2026-03-06T10:00:00Z"\n'])
    assert changes[1][0] == "insert" and len(changes) == 2
    assert changes[1][2] == [
        "  - id: GAP-OP-849\n",
        "    discovered_by: LOOP-COMMS-AGENTIC-LAYER-20260223\n",
        '    discovered_at: "2026-03-06"\n',
        "    type: missing-entry\n",
        "    doc: null\n",
        "    description: |\n",
        "      CalDAV endpoint not in the stack contract.\n",
        "      Found by contract.endpoints.sync.\n",
        "    severity: medium\n",
        "    status: open\n",
    ]
    assert doc.text.startswith(old[: old.index("updated:")])  # the comment header, byte for byte
    reloaded = yaml.safe_load(doc.text)
    assert reloaded["gaps"][-1] == entry and reloaded["gaps"][:-1] == yaml.safe_load(old)["gaps"]


@pytest.mark.parametrize(
    ("text", "expected_tail"),
    [
        ("items:\n- a\n- b\nafter: 1\n", "items:\n- a\n- b\n- c\nafter: 1\n"),  # dash at the parent's column
        ("items:\n  - a\n  - b\nafter: 1\n", "items:\n  - a\n  - b\n  - c\nafter: 1\n"),  # indented
        ("items:\n    -   a\nafter: 1\n", "items:\n    -   a\n    -   c\nafter: 1\n"),  # its own odd style
    ],
)
def test_append_keeps_the_sequence_s_own_indentation(text, expected_tail):
    doc = edit(text)
    doc.append_item(("items",), "c")
    assert doc.text == expected_tail


def test_append_a_mapping_item_in_both_styles():
    flush = edit("top:\n  list:\n  - id: 1\n    name: x\n")
    flush.append_item(("top", "list"), {"id": 2, "tags": ["a", "b"], "meta": {"k": "v"}})
    assert flush.text.endswith("  - id: 2\n    tags:\n    - a\n    - b\n    meta:\n      k: v\n")
    indented = edit("top:\n  list:\n    - id: 1\n")
    indented.append_item(("top", "list"), {"id": 2, "tags": ["a"]})
    assert indented.text.endswith("    - id: 1\n    - id: 2\n      tags:\n        - a\n")


def test_comments_and_blank_lines_survive_and_new_items_go_after_the_last_item():
    text = "# head\nlist:\n  - a  # first\n  - b  # last\n\n# a comment about what follows\nnext: 1  # tail\n"
    doc = edit(text)
    doc.append_item(("list",), "c")
    doc.add_entry((), "more", "x")
    assert doc.text == (
        "# head\nlist:\n  - a  # first\n  - b  # last\n  - c\n\n# a comment about what follows\n"
        "next: 1  # tail\nmore: x\n"
    )


def test_set_scalar_keeps_the_old_quoting_style():
    doc = edit("a: \"GAP-OP-1\"\nb: 'it''s'\nc: plain\nd: 5\n")
    doc.set_scalar(("a",), "GAP-OP-2")
    doc.set_scalar(("b",), "it's new")
    doc.set_scalar(("c",), "still plain")
    doc.set_scalar(("d",), 6)
    assert doc.text == "a: \"GAP-OP-2\"\nb: 'it''s new'\nc: still plain\nd: 6\n"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("yes", '"yes"'),
        ("123", '"123"'),
        ("2026-03-06", '"2026-03-06"'),
        ("null", '"null"'),
        ("a: b", '"a: b"'),
        ("#x", '"#x"'),
        ("x #y", '"x #y"'),
        ("", '""'),
        (" lead", '" lead"'),
        ("tab\there", '"tab\\there"'),
        ('say "hi" \\ bye', 'say "hi" \\ bye'),  # plain YAML holds quotes and backslashes inside
        ("bell\x07", '"bell\\x07"'),
        ("ok.value/with-dashes_1", "ok.value/with-dashes_1"),
        ("Grüße ✓", "Grüße ✓"),
        (None, "null"),
        (True, "true"),
        (7, "7"),
        (1.5, "1.5"),
    ],
)
def test_values_are_quoted_only_when_needed(value, written):
    doc = edit("k: old\n")
    doc.set_scalar(("k",), value)
    assert doc.text == f"k: {written}\n"
    assert yaml.safe_load(doc.text) == {"k": value}


def test_multi_line_strings_become_literal_blocks():
    doc = edit("a:\n  b: one line  \nc: 1\n")
    doc.set_scalar(("a", "b"), "first\n  indented\n\nlast\n")
    assert doc.text == "a:\n  b: |\n    first\n      indented\n\n    last\nc: 1\n"
    doc.set_scalar(("a", "b"), "no final newline\nhere")
    assert doc.text == "a:\n  b: |-\n    no final newline\n    here\nc: 1\n"
    doc.set_scalar(("a", "b"), "back to one line")
    assert doc.text == "a:\n  b: back to one line\nc: 1\n"


def test_a_block_scalar_keeps_its_indentation_and_the_blank_lines_after_it():
    doc = edit("a: |\n      deep\n      text\n\n# note\nb: 1\n")
    doc.set_scalar(("a",), "new\ntext\n")
    assert doc.text == "a: |\n      new\n      text\n\n# note\nb: 1\n"


def test_strings_a_literal_cannot_hold_are_double_quoted():
    doc = edit("k: x\n")
    for value in (" leading space\nsecond", "two trailing\n\n", "carriage\r\nreturn", "\x00nul\n"):
        doc.set_scalar(("k",), value)
        assert yaml.safe_load(doc.text) == {"k": value}
        assert doc.text.startswith('k: "')


def test_set_scalar_adds_an_absent_key_at_the_end_of_its_mapping():
    doc = edit("a:\n  x: 1  # keep\nb: 2\n")
    doc.set_scalar(("a", "y"), "new")
    assert doc.text == "a:\n  x: 1  # keep\n  y: new\nb: 2\n"


def test_an_empty_value_gets_its_space():
    doc = edit("a:\nb: 1\n")
    doc.set_scalar(("a",), "now set")
    assert doc.text == "a: now set\nb: 1\n"
    doc = edit("a: # why empty\nb: 1\n")
    doc.set_scalar(("a",), "multi\nline\n")  # a comment follows: no block here
    assert yaml.safe_load(doc.text) == {"a": "multi\nline\n", "b": 1}
    assert "# why empty" in doc.text


def test_empty_flow_collections_become_blocks():
    doc = edit("requires: []\nmeta: {}  # filled later\nz: 1\n")
    doc.append_item(("requires",), "secrets.binding")
    doc.add_entry(("meta",), "k", "v")
    assert doc.text == "requires:\n  - secrets.binding\nmeta:\n  k: v  # filled later\nz: 1\n"


def test_no_final_newline_and_crlf_files():
    doc = edit("a:\n  - 1")
    doc.append_item(("a",), 2)
    assert doc.text == "a:\n  - 1\n  - 2\n"
    crlf = edit("a: 1\r\nb:\r\n  - x\r\n")
    crlf.append_item(("b",), {"k": "v", "m": "two\nlines\n"})
    crlf.set_scalar(("a",), 2)
    assert "\n" not in crlf.text.replace("\r\n", "")
    assert yaml.safe_load(crlf.text) == {"a": 2, "b": ["x", {"k": "v", "m": "two\nlines\n"}]}


def test_items_of_every_shape():
    doc = edit("l:\n  - 0\n")
    items = [None, [], {}, ["a", ["b"]], {"a": {"b": {"c": [1, {"d": "e"}]}}}, "multi\nline\n", False]
    for item in items:
        doc.append_item(("l",), item)
    assert yaml.safe_load(doc.text) == {"l": [0, *items]}
    assert "  - - a\n    - - b\n" in doc.text


def test_errors_name_the_file_the_path_and_the_line_and_leave_the_text_alone():
    text = "a:\n  b: [1, 2]\n  c:\n    d: 1\nlist:\n  - x\n"
    doc = edit(text)
    cases = [
        (lambda: doc.add_entry(("a",), "b", 3), "t.yaml: a.b: already exists", 2),
        (lambda: doc.set_scalar(("a", "c"), "x"), "t.yaml: a.c: is a mapping, not a scalar", 4),
        (lambda: doc.append_item(("a", "b"), 3), "flow-style sequence", 2),
        (lambda: doc.append_item(("a", "c"), 3), "is a mapping, not a sequence", 4),
        (lambda: doc.set_scalar(("list", 5), "x"), "t.yaml: list[5]: no such item (the sequence has 1)", 6),
        (lambda: doc.set_scalar(("nope", "x"), "v"), "t.yaml: nope: not found", 1),
        (lambda: doc.add_entry((), "k", object()), "cannot write a value of type object", 1),
    ]
    for action, message, line in cases:
        with pytest.raises(RoundTripError) as caught:
            action()
        assert message in str(caught.value)
        assert isinstance(caught.value, ContractError) and caught.value.exit_code == ExitCode.USAGE
        assert caught.value.problems[0].file == "t.yaml" and caught.value.problems[0].line == line
        assert doc.text == text


def test_an_edit_that_would_change_more_than_intended_is_refused():
    text = "base: &b 1\nother: *b\n"  # the alias's marks are the anchor's: editing it would change both
    doc = edit(text)
    with pytest.raises(RoundTripError, match="file left as it was"):
        doc.set_scalar(("other",), 2)
    assert doc.text == text and doc.data == {"base": 1, "other": 1}


def test_a_duplicated_key_is_not_guessed():
    doc = edit("a: 1\na: 2\n")
    with pytest.raises(RoundTripError, match="appears 2 times"):
        doc.set_scalar(("a",), 3)


def test_bad_files_are_contract_errors(tmp_path):
    with pytest.raises(RoundTripError, match="file not found"):
        RoundTripYaml.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1,\nb: 2\n")
    with pytest.raises(RoundTripError) as caught:
        RoundTripYaml.load(tmp_path / "bad.yaml")
    assert caught.value.problems[0].line is not None
    (tmp_path / "latin.yaml").write_bytes(b"a: \xe9\n")
    with pytest.raises(RoundTripError, match="not UTF-8"):
        RoundTripYaml.load(tmp_path / "latin.yaml")
    (tmp_path / "two.yaml").write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(RoundTripError, match="more than one YAML document"):
        RoundTripYaml.load(tmp_path / "two.yaml")


def test_save_is_atomic_and_keeps_the_file_mode(tmp_path):
    target = tmp_path / "stack.yaml"
    shutil.copy(STACK_SAMPLE, target)
    target.chmod(0o640)
    doc = RoundTripYaml.load(target)
    doc.add_entry((), "endpoints_found", {"caldav": {"url": "https://mail.example/dav/cal/"}})
    doc.save(target)
    assert target.read_text() == doc.text and (target.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["stack.yaml"]  # no temporary file left behind
    assert changed_lines(STACK_SAMPLE.read_text(), doc.text)[0][0] == "insert"
    assert len(changed_lines(STACK_SAMPLE.read_text(), doc.text)) == 1


def test_merge_adds_replaces_extends_and_leaves_what_it_cannot_do_round_trip():
    text = "s:\n  a: 1  # keep\n  l:\n    - x\n  m:\n    k: v\n  other: kept\n  short:\n    - p\n    - q\n"
    doc = edit(text)
    left = doc.merge(("s",), {"a": 2, "l": ["x", "y"], "m": {"k": "v", "n": {"deep": True}}, "short": ["q"],
                              "new": "z"})  # fmt: skip
    assert left == ["s.short"]
    assert doc.text == (
        "s:\n  a: 2  # keep\n  l:\n    - x\n    - y\n  m:\n    k: v\n    n:\n      deep: true\n  other: kept\n"
        "  short:\n    - p\n    - q\n  new: z\n"
    )
    merged = doc.text
    assert doc.merge(("s",), {"a": 2, "new": "z"}) == [] and doc.text == merged  # a second merge: nothing


def test_merge_reports_a_flow_list_it_cannot_extend():
    doc = RoundTripYaml.from_text("a: [x]  # keep\nb: []\n")
    assert doc.merge((), {"a": ["x", "y"], "b": ["z"]}) == ["a"]
    assert doc.text == "a: [x]  # keep\nb:\n  - z\n"
