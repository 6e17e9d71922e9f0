"""The one YAML loader: safe, strict about duplicates and alias bombs, and keeps line numbers.

PyYAML silently keeps the last of two duplicate keys and will happily expand a
billion-laughs alias tree, so documents are composed into nodes and built here.
Every value's line is kept in `lines`, keyed by its path, so a validation error
can say `file:line: field: message`.

Two readings, by who owns the file:
- this project's files are strict: a duplicate key or a second document is an error;
- the spine's files (`spine_owned=True`) are read as the spine's own tools read them
  (yq, PyYAML): a duplicate key is a warning naming both lines and the last one wins;
  a file of several documents is read document by document (the first one's keys
  are the data; later documents are only checked to parse), with a warning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spine_comms.core.errors import ContractError, Problem

# Real contracts have a few thousand nodes; this is far above that and far below harm.
MAX_NODES = 200_000
MAX_BYTES = 16 * 1024 * 1024

# libyaml's composer is several times faster and keeps the same marks; PyYAML's pure one otherwise.
_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PathKey = tuple[str | int, ...]
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class YamlDocument:
    path: Path
    data: Any
    sha256: str
    lines: dict[PathKey, int] = field(default_factory=dict)
    # What a spine-owned file does that this project's files may not (duplicate keys, several documents).
    warnings: list[Problem] = field(default_factory=list)
    # The path of every repeated key occurrence (yq keeps them all: `keys` lists a repeated key twice).
    repeated: list[PathKey] = field(default_factory=list)

    def line_of(self, key: PathKey) -> int | None:
        """The line of the value at `key`, or of its nearest parent that has one."""
        key = tuple(key)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), 1)


class _Builder:
    def __init__(self, path: str, *, spine_owned: bool = False):
        self.path = path
        self.spine_owned = spine_owned
        self.lines: dict[PathKey, int] = {}
        self.count = 0
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.repeated: list[PathKey] = []
        self._scalar_loader = yaml.SafeLoader("")

    def build(self, node: yaml.Node, key: PathKey) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise ContractError(
                f"{self.path}: more than {MAX_NODES} values (an alias bomb?)",
                problems=[Problem(self.path, node.start_mark.line + 1, "", "too many values after expanding aliases")],
            )
        self.lines.setdefault(key, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, key)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, (*key, i)) for i, child in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        # Most values are strings: the composer has resolved their tag, so their text is their value
        # (constructing each one costs seconds on the spine's 300 binding files).
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            return node.value
        return self._scalar_loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, key: PathKey) -> dict:
        self._scalar_loader.flatten_mapping(node)  # resolves `<<` merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            name = self._scalar(key_node)
            if not isinstance(name, str | int | float | bool) and name is not None:
                self.problems.append(
                    Problem(self.path, key_node.start_mark.line + 1, _dotted(key), "keys must be scalars")
                )
                continue
            if name in out:
                first = self.lines.get((*key, name), "?")
                line = key_node.start_mark.line + 1
                if not self.spine_owned:
                    self.problems.append(
                        Problem(self.path, line, _dotted((*key, name)), f"duplicate key (first at line {first})")
                    )
                    continue
                # yq and PyYAML keep the last: so do we, and say so.
                message = f"duplicate key at lines {first} and {line}; the last wins, as yq and PyYAML read it"
                self.warnings.append(Problem(self.path, line, _dotted((*key, name)), message))
                self.repeated.append((*key, name))
                for seen in [k for k in self.lines if k[: len(key) + 1] == (*key, name)]:
                    del self.lines[seen]
            self.lines[(*key, name)] = key_node.start_mark.line + 1
            out[name] = self.build(value_node, (*key, name))
        return out


def _dotted(key: PathKey) -> str:
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(path: Path | str, *, allow_empty: bool = False, spine_owned: bool = False) -> YamlDocument:
    """Load one YAML file. Every problem becomes a ContractError with file and line.

    `spine_owned`: the file belongs to the spine; read it as yq and PyYAML do (see the module's doc)."""
    path = Path(path)
    shown = str(path)

    def fail(message: str, line: int | None = None) -> ContractError:
        return ContractError(message, problems=[Problem(shown, line, "", message)])

    try:
        if not path.exists():
            raise fail("file not found")
        if path.is_dir():
            raise fail("is a directory, expected a YAML file")
        raw = path.read_bytes()[: MAX_BYTES + 1]
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise fail(f"larger than {MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise fail(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})", line) from None
    digest = hashlib.sha256(raw).hexdigest()
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        if allow_empty:
            return YamlDocument(path, None, digest, {(): 1})
        raise fail("file is empty", 1)
    try:
        nodes = list(yaml.compose_all(text, Loader=_COMPOSER))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "invalid YAML"
        raise fail(f"YAML syntax: {reason}", mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise fail(f"YAML syntax: {exc}") from None
    # The spine's contracts sometimes end with `---` and a second, empty document.
    nodes = [n for n in nodes if n is not None]
    warnings: list[Problem] = []
    if len(nodes) > 1:
        if not spine_owned:
            raise fail("more than one YAML document", nodes[1].start_mark.line + 1)
        message = f"{len(nodes)} YAML documents (yq reads each); spine-comms reads the first one's keys"
        warnings.append(Problem(shown, nodes[1].start_mark.line + 1, "", message))
    if not nodes:
        raise fail("file is empty", 1)
    data = None
    lines: dict[PathKey, int] = {}
    repeated: list[PathKey] = []
    for index, node in enumerate(nodes):
        builder = _Builder(shown, spine_owned=spine_owned)
        try:
            built = builder.build(node, ())
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            raise fail(f"YAML value: {exc.problem}", mark.line + 1 if mark else None) from None
        except RecursionError:
            raise fail("nesting too deep (a recursive alias?)") from None
        if builder.problems:
            raise ContractError(f"{shown}: invalid YAML", problems=builder.problems)
        warnings += builder.warnings
        if index == 0:
            data, lines, repeated = built, builder.lines, builder.repeated
    return YamlDocument(path, data, digest, lines, warnings, repeated)
