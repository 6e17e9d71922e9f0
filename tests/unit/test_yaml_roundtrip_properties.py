"""Properties of core.yaml_roundtrip over generated documents in several layouts.

Documents are dumped by PyYAML with 2 or 4 space indents, sequences either at the
parent's column or indented, and comment lines sprinkled between entries. For any
edit: the result parses to exactly the intended data, and every line the edit did
not have to touch is byte-identical and in place.
"""

from __future__ import annotations

import difflib

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spine_comms.core.yaml_roundtrip import RoundTripYaml

KEY = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789 .:#'\"", min_size=1, max_size=12)
TEXT = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="ab \n:#-'\"\t", max_size=30),
    st.sampled_from(["yes", "no", "null", "~", "1.0", "0x1f", "2026-03-06", "GAP-OP-12", "- x", "a: b", "|", ">"]),
)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False), TEXT)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEY, inner, max_size=4)),
    max_leaves=12,
)
DOCUMENT = st.dictionaries(KEY, VALUE, min_size=1, max_size=5)


class _IndentedDumper(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


@st.composite
def documents(draw):
    data = draw(DOCUMENT)
    dumper = _IndentedDumper if draw(st.booleans()) else yaml.SafeDumper
    indent = draw(st.sampled_from([2, 4]))
    text = yaml.dump(data, Dumper=dumper, indent=indent, sort_keys=False, allow_unicode=True, width=10_000)
    lines = text.splitlines(keepends=True)
    for at in sorted(draw(st.lists(st.integers(0, len(lines)), max_size=4)), reverse=True):
        lines.insert(at, "# note " + str(at) + "\n")
    with_comments = "".join(lines)
    try:
        same = yaml.safe_load(with_comments) == data
    except yaml.YAMLError:
        same = False
    return (with_comments if same else text), data  # a comment inside a multi-line scalar is dropped


def paths(data, kind):
    """Every path in `data` to a value of type `kind`."""
    out = []

    def walk(value, path):
        if isinstance(value, kind):
            out.append(path)
        if isinstance(value, dict):
            for key, child in value.items():
                walk(child, (*path, key))
        elif isinstance(value, list):
            for i, child in enumerate(value):
                walk(child, (*path, i))

    walk(data, ())
    return out


def changes(old: str, new: str):
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    return [(tag, i1, i2, j1, j2) for tag, i1, i2, j1, j2 in ops if tag != "equal"], a, b


def parent_is_sequence(data, path) -> bool:
    node = data
    for part in path[:-1]:
        node = node[part]
    return bool(path) and isinstance(node, list)


SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(documents(), VALUE, st.data())
def test_appending_inserts_one_block_and_touches_nothing_else(doc, item, choose):
    text, data = doc
    targets = [p for p in paths(data, list) if data_at(data, p) or not parent_is_sequence(data, p)]
    assume(targets)
    path = choose.draw(st.sampled_from(targets))
    was_empty = not data_at(data, path)
    editor = RoundTripYaml.from_text(text)
    editor.append_item(path, item)
    expected = yaml.safe_load(text)
    data_at(expected, path).append(item)
    assert yaml.safe_load(editor.text) == expected
    ops, old, new = changes(text, editor.text)
    if was_empty:  # `key: []` became `key:` and the items: that one line is replaced
        assert len(ops) == 1 and ops[0][0] == "replace" and ops[0][2] - ops[0][1] == 1
    else:
        assert [op[0] for op in ops] == ["insert"]
        assert old == new[: ops[0][3]] + new[ops[0][4] :]


@SETTINGS
@given(documents(), KEY, VALUE, st.data())
def test_adding_an_entry_inserts_one_block_and_touches_nothing_else(doc, key, value, choose):
    text, data = doc
    targets = [p for p in paths(data, dict) if key not in data_at(data, p)]
    targets = [p for p in targets if data_at(data, p) or not parent_is_sequence(data, p)]
    assume(targets)
    path = choose.draw(st.sampled_from(targets))
    editor = RoundTripYaml.from_text(text)
    editor.add_entry(path, key, value)
    expected = yaml.safe_load(text)
    data_at(expected, path)[key] = value
    reloaded = yaml.safe_load(editor.text)
    assert reloaded == expected and list(data_at(reloaded, path)) == list(data_at(expected, path))
    ops, old, new = changes(text, editor.text)
    if data_at(data, path):
        assert [op[0] for op in ops] == ["insert"]
        assert old == new[: ops[0][3]] + new[ops[0][4] :]
    else:
        assert len(ops) == 1 and ops[0][2] - ops[0][1] == 1


@SETTINGS
@given(documents(), SCALAR, st.data())
def test_setting_a_scalar_touches_only_its_own_lines(doc, value, choose):
    text, data = doc
    targets = [p for p in paths(data, (str, int, float, bool, type(None))) if p]
    assume(targets)
    path = choose.draw(st.sampled_from(targets))
    editor = RoundTripYaml.from_text(text)
    node = editor._find(path)[0]
    first, last = node.start_mark.line, node.end_mark.line  # the scalar's own lines (0-based)
    editor.set_scalar(path, value)
    expected = yaml.safe_load(text)
    parent = data_at(expected, path[:-1])
    parent[path[-1]] = value
    assert yaml.safe_load(editor.text) == expected
    # Compared by position, not by a diff: with repeated lines ("- null" twice) a diff may pair
    # the unchanged line with its twin and report an insert and a delete around the scalar.
    old, new = text.splitlines(keepends=True), editor.text.splitlines(keepends=True)
    after = len(old) - (last + 1)
    assert new[:first] == old[:first]  # nothing before the scalar changed
    assert new[len(new) - after :] == old[last + 1 :]  # nor anything after it


def data_at(data, path):
    for part in path:
        data = data[part]
    return data
