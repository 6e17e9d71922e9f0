"""Measurement: ruamel.yaml's round trip against core.yaml_roundtrip (our text-splicing editor).

For every YAML file under the spine samples and tests/fixtures, plus synthetic files with the
spine's odd corners, it checks that ruamel.yaml (preserve_quotes, the file's own indentation as
core.yaml_emit.file_layout reads it, a wide line width) loads and dumps the file byte for byte,
then makes the edits gaps.file / gaps.close, spine.install and contract.endpoints.sync make (the
same RoundTripYaml calls, with payloads of their shape) with both editors and compares:

- ruamel == ours: the two results are the same bytes;
- ruamel: the only lines that differ from the original are the ones ours changes (a diff count);
- ruamel's result read back (PyYAML) equals the data ours produces (the intent).

ruamel.yaml is not a dependency of spine-comms, only of the `bench` extra:

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/yaml_roundtrip_measure.py [--samples DIR]
"""

from __future__ import annotations

import argparse
import copy
import difflib
import io
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spine_comms.core.yaml_emit import file_layout, same  # noqa: E402
from spine_comms.core.yaml_roundtrip import RoundTripError, RoundTripYaml  # noqa: E402

GAP = {
    "id": "GAP-OP-9001",
    "discovered_by": "spine-comms gaps.file",
    "discovered_at": "2026-12-06",
    "type": "missing-entry",
    "doc": "ops/bindings/communications.stack.contract.yaml",
    "description": "CalDAV discovery answered 404 on /.well-known/caldav: the operator's proxy drops the "
    "redirect; a line longer than eighty characters, with: a colon, # a hash and 'quotes'.\nSecond line.",
    "severity": "medium",
    "status": "open",
}
CAPABILITY = {
    "description": "CalDAV discovery and collections status",
    "safety": "read-only",
    "approval": "auto",
    "outputs": ["receipt"],
    "domain": "communications",
    "tags": ["calendar", "caldav"],
    "requires": [],
    "command": "spine-comms calendar.caldav.status",
}
ENDPOINTS = {
    "imap": [{"host": "mail.spine.test", "port": 993, "tls": "implicit"}],
    "submission": [{"host": "mail.spine.test", "port": 465, "tls": "implicit"}],
    "caldav": [{"url": "https://mail.spine.test/dav/cal/ops%40spine.test/", "proof": "R20261206-043000"}],
}

SYNTHETIC = {
    "flow-lists.yaml": "version: 1\nupdated: '2026-01-01'\ntags: [a, b, 'c d']\nempty: []\nitems:\n"
    "  - {id: one, on: [x, y]}\n  - id: two\n    on: [z]\n",
    "comments-between-keys.yaml": "# banner\nversion: 1  # the version\n\n# a comment between keys\n"
    'updated: "2026-01-01"\n\n# another\ncapabilities:\n  # inside\n  a.b:\n    description: x  # trailing\n'
    "  # between entries\n  c.d:\n    description: y\n# after the mapping\nplugins:\n- name: p1\n  # in an item\n"
    "  path: x\n",
    "duplicate-keys.yaml": "version: 1\nupdated: '2026-01-01'\nname: first\nname: second\ngaps:\n- id: GAP-OP-1\n"
    "  status: open\n  status: fixed\n",
    "long-strings.yaml": "version: 1\nupdated: 2026-01-01\ndescription: "
    + "word " * 40
    + '\nquoted: "'
    + "x" * 150
    + '"\nfolded: >\n  one two\n  three\nliteral: |\n  keep\n    this\ngaps:\n  - id: GAP-OP-1\n'
    "    description: |\n      block text\n    status: open\n",
    "anchors.yaml": "version: 1\nupdated: '2026-01-01'\ndefaults: &defaults\n  safety: read-only\n  approval: auto\n"
    "capabilities:\n  a.b:\n    <<: *defaults\n    description: with merge key\n  c.d:\n    description: alias\n"
    "    tags: &t [x, y]\n  e.f:\n    tags: *t\n",
    "odd-scalars.yaml": "---\nversion: 1\nupdated_at: 2026-01-01\non: yes\nempty:\nnull_word: null\n"
    "tilde: ~\nint_string: '010'\nfloat: 1.0\ndate_string: \"2026-02-03\"\nendpoints:\n  imap:\n"
    "    - host: mail.spine.test\n      port: 993\n",
    "indent-4.yaml": "version: 1\nupdated: '2026-01-01'\ncapabilities:\n    a.b:\n        description: x\n"
    "        tags:\n            - one\n            - two\ngaps:\n    -   id: GAP-OP-1\n        status: open\n",
}


# ---- the edits, as the capabilities make them ---------------------------------------------------------------


def edits_for(data) -> list[tuple[str, list[tuple]]]:
    """(name, [(operation, path, *args)]) for the edits that apply to this file's shape."""
    if not isinstance(data, dict):
        return []
    out = []
    top_scalar = next((k for k, v in data.items() if isinstance(v, str | int) and not isinstance(v, bool)), None)
    if isinstance(data.get("gaps"), list):
        stamp = [("set_scalar", ("updated",), "2026-12-06T04:30:00Z")] if "updated" in data else []
        out.append(("gaps.file", [("append_item", ("gaps",), GAP), *stamp]))
        if data["gaps"] and isinstance(data["gaps"][0], dict):
            closing = [("set_scalar", ("gaps", 0, "status"), "fixed"), ("set_scalar", ("gaps", 0, "fixed_in"), "L-X")]
            out.append(("gaps.close", [*closing, *stamp]))
    if isinstance(data.get("capabilities"), dict):
        stamp = [("set_scalar", ("updated",), "2026-12-06")] if "updated" in data else []
        out.append(("spine.install", [("add_entry", ("capabilities",), "communications.calendar.caldav.status",
                                       CAPABILITY), *stamp]))  # fmt: skip
        first = next(iter(data["capabilities"]), None)
        if first is not None and isinstance(data["capabilities"][first], dict):
            tags = [*(data["capabilities"][first].get("tags") or []), "comms"]
            wanted = {"description": "changed by spine.install", "tags": tags}
            out.append(("spine.install update", [("merge", ("capabilities", first), wanted)]))
    if isinstance(data.get("plugins"), list):
        out.append(("spine.install plugin", [("append_item", ("plugins",), {"name": "spine-comms", "path": "x"})]))
    stamp = [("set_scalar", ("updated_at",), "2026-12-06")] if isinstance(data.get("updated_at"), str) else []
    if isinstance(data.get("endpoints"), dict):
        out.append(("contract.endpoints.sync", [("merge", ("endpoints",), ENDPOINTS), *stamp]))
    elif "endpoints" not in data:  # an `endpoints` that is not a mapping: the capability refuses, nothing to compare
        out.append(("contract.endpoints.sync", [("add_entry", (), "endpoints", ENDPOINTS), *stamp]))
    if top_scalar is not None:
        out.append(("set a top-level scalar", [("set_scalar", (top_scalar,), "changed: value #1")]))
    return out


def ours(text: str, steps: list[tuple]) -> tuple[str | None, list[str], str]:
    """(text, what merge left for a person, error) from RoundTripYaml."""
    try:
        doc = RoundTripYaml.from_text(text)
        left: list[str] = []
        for operation, path, *args in steps:
            left += getattr(doc, operation)(path, *copy.deepcopy(args)) or []
        return doc.text, left, ""
    except RoundTripError as exc:
        return None, None, str(exc).splitlines()[0][:100]


def ruamel_yaml(text: str):
    from ruamel.yaml import YAML

    node = yaml.compose(text)
    step, seq = file_layout(node)
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.allow_duplicate_keys = True
    rt.width = 4096
    rt.indent(mapping=step, sequence=seq + 2, offset=seq)
    rt.explicit_start = text.lstrip().startswith("---")
    return rt


def ruamel_dump(rt, data) -> str:
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


def _container(data, path):
    for part in path:
        data = data[part]
    return data


def _merge(target, wanted) -> None:
    for key, value in wanted.items():
        old = target.get(key)
        if key not in target:
            target[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(old, dict):
            _merge(old, value)
        elif isinstance(value, list) and isinstance(old, list) and list(old) == value[: len(old)]:
            old.extend(copy.deepcopy(value[len(old) :]))
        elif not isinstance(value, dict | list):
            target[key] = value


def theirs(text: str, steps: list[tuple]) -> tuple[str | None, str]:
    try:
        rt = ruamel_yaml(text)
        data = rt.load(text)
        for operation, path, *args in steps:
            if operation == "set_scalar":
                _container(data, path[:-1])[path[-1]] = args[0]
            elif operation == "add_entry":
                _container(data, path)[args[0]] = copy.deepcopy(args[1])
            elif operation == "append_item":
                _container(data, path).append(copy.deepcopy(args[0]))
            elif operation == "merge":
                _merge(_container(data, path), args[0])
        return ruamel_dump(rt, data), ""
    except Exception as exc:  # any ruamel failure is a measured outcome
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"


def intended(text: str, steps: list[tuple]):
    """The data the edits mean: PyYAML's reading of the file with the edits applied to it."""
    data = yaml.safe_load(text)
    for operation, path, *args in steps:
        if operation == "set_scalar":
            _container(data, path[:-1])[path[-1]] = args[0]
        elif operation == "add_entry":
            _container(data, path)[args[0]] = copy.deepcopy(args[1])
        elif operation == "append_item":
            _container(data, path).append(copy.deepcopy(args[0]))
        elif operation == "merge":
            _merge(_container(data, path), args[0])
    return data


def disturbed(original: str, result: str) -> int:
    """Lines of the original that are not in the result, unchanged and in order: what an edit touched."""
    old = original.splitlines()
    matcher = difflib.SequenceMatcher(None, old, result.splitlines(), autojunk=False)
    return len(old) - sum(block.size for block in matcher.get_matching_blocks())


def changed_lines(a: str, b: str) -> int:
    return sum(1 for line in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---")))  # fmt: skip


def measure(name: str, text: str) -> list[dict]:
    rows = []
    try:
        rt = ruamel_yaml(text)
        dumped = ruamel_dump(rt, rt.load(text))
        identical = "yes" if dumped == text else f"no ({changed_lines(text, dumped)} lines)"
    except Exception as exc:
        identical = f"error: {type(exc).__name__}"
    rows.append({"file": name, "edit": "load + dump", "ours": "-", "ruamel": identical, "same": "-"})
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return rows
    for edit, steps in edits_for(data):
        our_text, left, our_error = ours(text, steps)
        their_text, their_error = theirs(text, steps)
        want = intended(text, steps)
        row = {"file": name, "edit": edit}
        for who, result, error in (("ours", our_text, our_error), ("ruamel", their_text, their_error)):
            if result is None:
                row[who] = f"refused: {error}"
                continue
            try:
                meant = "as meant" if same(yaml.safe_load(result), want) else "NOT as meant"
            except yaml.YAMLError:
                meant = "unreadable"
            if who == "ours" and left and meant != "as meant":  # merge's documented refusal, reported
                meant = f"left for a person: {', '.join(left)}"
            row[who] = f"{meant}, {disturbed(text, result)} old lines touched"
        row["same"] = ("yes" if our_text == their_text else f"no ({changed_lines(our_text, their_text)} lines)") \
            if our_text is not None and their_text is not None else "-"  # fmt: skip
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="/work/shared/reference/spine-samples")
    parser.add_argument("--show-diff", help="print ruamel-vs-ours diffs for files whose name contains this")
    args = parser.parse_args()
    files = sorted(p for d in (Path(args.samples), REPO / "tests" / "fixtures") if d.is_dir()
                   for p in d.rglob("*") if p.suffix in (".yaml", ".yml"))  # fmt: skip
    sources = [(str(p.relative_to(p.parents[1])), p.read_text()) for p in files]
    sources += [(f"synthetic/{name}", text) for name, text in SYNTHETIC.items()]
    rows = [row for name, text in sources for row in measure(name, text)]
    header = ("file", "edit", "ours", "ruamel", "same")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")
    dumps = [r for r in rows if r["edit"] == "load + dump"]
    edits = [r for r in rows if r["edit"] != "load + dump"]
    print(f"\nfiles: {len(dumps)}; load+dump byte-identical: {sum(r['ruamel'] == 'yes' for r in dumps)}")
    for who in ("ours", "ruamel"):
        meant = [r for r in edits if r[who].startswith("as meant")]
        print(
            f"{who}: {len(edits)} edits, {len(meant)} as meant, {sum(r[who].startswith('refused') for r in edits)} "
            f"refused, {sum(r[who].startswith('left') for r in edits)} left for a person, "
            f"{sum(r[who].startswith(('NOT', 'unreadable')) for r in edits)} written NOT as meant; old lines "
            f"touched in all: {sum(int(r[who].split(', ')[1].split()[0]) for r in edits if ', ' in r[who])}"
        )
    print(f"byte-identical results: {sum(r['same'] == 'yes' for r in edits)} of {len(edits)}")
    if args.show_diff:
        for name, text in sources:
            if args.show_diff not in name:
                continue
            for edit, steps in edits_for(yaml.safe_load(text)):
                mine, _, _ = ours(text, steps)
                other, _ = theirs(text, steps)
                if mine and other and mine != other:
                    print(f"\n## {name}: {edit}")
                    sys.stdout.writelines(difflib.unified_diff(mine.splitlines(True), other.splitlines(True),
                                                               "ours", "ruamel", n=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
