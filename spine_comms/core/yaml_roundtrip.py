"""Round-trip edits of block-style YAML: change only the bytes an edit must change.

Contracts that the toolkit edits (the gaps registry, the stack contract, the
spine's capability registry) are owned by people and by other tools: their
comments, key order, quoting and blank lines must survive. ruamel.yaml keeps
comments but re-indents and re-quotes untouched parts, which a byte-diff review
would show as noise. So edits here are text splices located by PyYAML's node
marks: a scalar's span is replaced, a new entry or item is inserted after the
last line of its mapping or sequence, and nothing else is touched. How the new
values are written (block style in the file's own indentation, quoting that reads
back the same) is core.yaml_emit's part.

Every edit is checked: the new text is parsed again and must equal the old data
with exactly the intended change (types and key order included). Anything else
raises RoundTripError and leaves the text as it was, so a formatting surprise can
never corrupt a file silently.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from spine_comms.core.atomic import write_atomic
from spine_comms.core.errors import ContractError, Problem
from spine_comms.core.yaml_emit import COMPOSER, emit_entry, emit_item, emit_scalar, file_layout, same

PathKey = tuple[str | int, ...]


class RoundTripError(ContractError):
    """An edit that cannot be made as asked, or whose result would differ from the intent."""


def _dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


class RoundTripYaml:
    def __init__(self, text: str, source: str, node: yaml.Node | None, data: Any):
        self.text = text
        self.original = text  # as loaded: diff() shows what the edits changed
        self.source = source
        self.data = data
        self._node = node

    # ---- loading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> RoundTripYaml:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            why = "file not found" if isinstance(exc, FileNotFoundError) else f"cannot read: {exc.strerror or exc}"
            raise RoundTripError(f"{path}: {why}", problems=[Problem(str(path), None, "", why)]) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise RoundTripError(f"{path}: not UTF-8", problems=[Problem(str(path), line, "", "not UTF-8")]) from None
        return cls.from_text(text, str(path))

    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> RoundTripYaml:
        node, data = _parse(text, source)
        return cls(text, source, node, data)

    # ---- edits ---------------------------------------------------------------------------------

    def set_scalar(self, path: PathKey, value: str | int | bool | None) -> None:
        """Replace the scalar at `path`, or add the key at the end of its mapping when absent."""
        path = tuple(path)
        if not path:
            raise self._error(path, "cannot replace the whole document")
        parent, owner_col = self._find(path[:-1])
        last = path[-1]
        if isinstance(parent, yaml.MappingNode) and self._child(parent, last, path) is None:
            self.add_entry(path[:-1], last, value)
            return
        node, owner_col = self._find(path)
        if not isinstance(node, yaml.ScalarNode):
            raise self._error(path, f"is a {_kind(node)}, not a scalar")
        flow = bool(getattr(parent, "flow_style", False))
        text, start, end = self.text, node.start_mark.index, node.end_mark.index
        line_end = text.find("\n", end)
        line_end = len(text) if line_end < 0 else line_end
        if node.style in ("|", ">"):
            # The old block's lines are replaced up to its last non-blank one; a new value ends its line.
            end = _block_scalar_end(text, start, end)
            content_col = _block_content_col(text, start, end) or owner_col + self._step()
            new = self._emit(path, value, content_col, allow_block=True) + "\n"
        else:
            block_ok = not flow and not text[end:line_end].strip()
            new = self._emit(path, value, owner_col + self._step(), allow_block=block_ok, style=node.style, flow=flow)
            if "\n" in new:  # a `|` block takes the rest of its line
                end = min(line_end + 1, len(text))
                new += "\n"
            if start == node.end_mark.index and not text[start - 1 : start].isspace():
                new = " " + new  # `key:` with an empty value: the value needs its space
        self._splice(start, end, new, path, lambda data: _put(data, path, value))

    def add_entry(self, path: PathKey, key: str, value: Any) -> None:
        """Add `key: value` at the end of the block mapping at `path`."""
        path = tuple(path)
        node, _ = self._find(path)
        if not isinstance(node, yaml.MappingNode):
            raise self._error(path, f"is a {_kind(node)}, not a mapping")
        if self._child(node, key, (*path, key)) is not None:
            raise self._error((*path, key), "already exists")
        if node.flow_style:
            if node.value:
                raise self._error(path, "is a flow-style mapping {...} with entries; only block style is edited")
            col = self._empty_flow_col(node, path)
            text = "\n" + self._emit_with(path, emit_entry, key, value, col)
            start, end = self._flow_span(node)
        else:
            start, lead = self._insert_point(node)
            end = start
            text = lead + self._emit_with(path, emit_entry, key, value, node.start_mark.column) + "\n"
        self._splice(start, end, text, (*path, key), lambda data: _dict_at(data, path).__setitem__(key, value))

    def append_item(self, path: PathKey, item: Any) -> None:
        """Append to the block sequence at `path`, in that sequence's own indentation style."""
        path = tuple(path)
        node, _ = self._find(path)
        if not isinstance(node, yaml.SequenceNode):
            raise self._error(path, f"is a {_kind(node)}, not a sequence")
        if node.flow_style:
            if node.value:
                raise self._error(path, "is a flow-style sequence [...] with items; only block style is edited")
            dash = self._empty_flow_col(node, path, sequence=True)
            text = "\n" + self._emit_with(path, emit_item, item, dash, 2)
            start, end = self._flow_span(node)
        else:
            dash = node.start_mark.column
            offset = max(node.value[0].start_mark.column - dash, 2)
            start, lead = self._insert_point(node)
            end = start
            text = lead + self._emit_with(path, emit_item, item, dash, offset) + "\n"
        self._splice(start, end, text, path, lambda data: _list_at(data, path).append(item))

    def merge(self, path: PathKey, wanted: dict) -> list[str]:
        """Make the mapping at `path` hold `wanted`, recursively: absent keys added at the end,
        differing scalars replaced, lists extended when the old list is their start. Keys not in
        `wanted` stay. Returns the dotted paths that cannot change round-trip (a list to shorten or
        reorder, a flow list `[a, b]` to extend, a scalar to become a mapping); they are left as they
        were, for a person."""
        path = tuple(path)
        left: list[str] = []
        for key, value in wanted.items():
            current = self._value_at(path)
            here = (*path, key)
            if not isinstance(current, dict) or key not in current:
                self.add_entry(path, key, value)
                continue
            old = current[key]
            if same(old, value):
                continue
            if isinstance(value, dict) and isinstance(old, dict):
                left += self.merge(here, value)
            elif isinstance(value, list) and isinstance(old, list) and same(old, value[: len(old)]):
                if self._is_filled_flow(here):  # append_item would refuse it: report, not raise
                    left.append(_dotted(here))
                    continue
                for item in value[len(old) :]:
                    self.append_item(here, item)
            elif not isinstance(value, dict | list) and not isinstance(old, dict | list):
                self.set_scalar(here, value)
            else:
                left.append(_dotted(here))
        return left

    def _is_filled_flow(self, path: PathKey) -> bool:
        node, _ = self._find(path)
        return bool(getattr(node, "flow_style", False) and node.value)

    def _value_at(self, path: PathKey) -> Any:
        value = self.data
        for part in path:
            value = value[part]
        return value

    def diff(self, label: str | None = None) -> str:
        """A unified diff from the text as loaded to the text now ("" when nothing changed)."""
        import difflib

        name = label or self.source
        lines = difflib.unified_diff(self.original.splitlines(keepends=True), self.text.splitlines(keepends=True),
                                     f"a/{name}", f"b/{name}")  # fmt: skip
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)

    def save(self, path: Path) -> None:
        """Write atomically, keeping the file's permission bits when it exists."""
        path = Path(path)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        write_atomic(path, self.text, mode)

    # ---- locating ------------------------------------------------------------------------------

    def _find(self, path: PathKey) -> tuple[yaml.Node, int]:
        """The node at `path` and the column of what owns it (its key, or its sequence's dash)."""
        node, owner_col, reached, problem = self._walk(path)
        if problem:
            raise self._error(path[: reached + 1], problem)
        return node, owner_col

    def _walk(self, path: PathKey) -> tuple[yaml.Node | None, int, int, str | None]:
        """Follow `path` as far as it goes: (node, owner column, parts followed, why it stopped)."""
        node, owner_col = self._node, 0
        if node is None:
            return None, 0, 0, "the document is empty"
        for depth, part in enumerate(path):
            if isinstance(node, yaml.MappingNode):
                found = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and same(_construct(k), part)]
                if not found:
                    return node, owner_col, depth, "not found"
                owner_col, node = found[0][0].start_mark.column, found[0][1]
            elif isinstance(node, yaml.SequenceNode):
                if not (
                    isinstance(part, int) and not isinstance(part, bool) and -len(node.value) <= part < len(node.value)
                ):
                    return node, owner_col, depth, f"no such item (the sequence has {len(node.value)})"
                owner_col, node = node.start_mark.column, node.value[part]
            else:
                return node, owner_col, depth, f"cannot descend into a {_kind(node)}"
        return node, owner_col, len(path), None

    def _child(self, node: yaml.MappingNode, key: Any, path: PathKey):
        matches = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and same(_construct(k), key)]
        if len(matches) > 1:
            raise self._error(path, f"the key appears {len(matches)} times; refusing to guess which to edit")
        return matches[0] if matches else None

    def _insert_point(self, node: yaml.Node) -> tuple[int, str]:
        """Just after the line where the collection's last value ends (its trailing comment included),
        and what must come first there (a newline when the file does not end with one)."""
        end = _last_leaf_end(node)
        if end > 0 and self.text[end - 1] == "\n":
            return end, ""
        newline = self.text.find("\n", end)
        return (len(self.text), "\n") if newline < 0 else (newline + 1, "")

    def _emit(self, path: PathKey, value: Any, col: int, **how) -> str:
        try:
            return emit_scalar(value, col, **how)
        except TypeError as exc:
            raise self._error(path, str(exc)) from None

    def _emit_with(self, path: PathKey, emitter, *args) -> str:
        try:
            return emitter(*args, self._step(), self._seq_offset())
        except (TypeError, RecursionError) as exc:
            raise self._error(path, str(exc) or "nested too deep") from None

    def _flow_span(self, node: yaml.Node) -> tuple[int, int]:
        """An empty `[]` or `{}` with the spaces before it: it becomes a block on the next lines."""
        start = node.start_mark.index
        while start > 0 and self.text[start - 1] in " \t":
            start -= 1
        return start, node.end_mark.index

    def _empty_flow_col(self, node: yaml.Node, path: PathKey, *, sequence: bool = False) -> int:
        if not path:
            raise self._error(path, "the whole document is an empty flow collection")
        parent, _ = self._find(path[:-1])
        if not isinstance(parent, yaml.MappingNode) or parent.flow_style:
            raise self._error(path, "an empty flow collection is only converted when it is a block mapping's value")
        col = self._child(parent, path[-1], path)[0].start_mark.column
        return col + (self._seq_offset() if sequence else self._step())

    def _step(self) -> int:
        return file_layout(self._node)[0]

    def _seq_offset(self) -> int:
        return file_layout(self._node)[1]

    # ---- the one way text changes ---------------------------------------------------------------

    def _splice(self, start: int, end: int, new: str, path: PathKey, change) -> None:
        if "\r\n" in self.text:
            new = new.replace("\r\n", "\n").replace("\n", "\r\n")
        text = self.text[:start] + new + self.text[end:]
        expected = copy.deepcopy(self.data)
        try:
            change(expected)
        except (KeyError, IndexError, TypeError) as exc:
            raise self._error(path, f"cannot apply the change: {exc}") from None
        try:
            node, data = _parse(text, self.source)
        except ContractError as exc:
            raise self._error(path, f"the edit would not parse ({exc.lines()[0]}); file left as it was") from None
        if not same(data, expected):
            raise self._error(path, "the edit would change more than intended; file left as it was")
        self.text, self._node, self.data = text, node, data

    def _error(self, path: PathKey, message: str) -> RoundTripError:
        return RoundTripError(f"{self.source}: {_dotted(path)}: {message}",
                              problems=[Problem(self.source, self._line_of(path), _dotted(path), message)])  # fmt: skip

    def _line_of(self, path: PathKey) -> int | None:
        node = self._walk(path)[0]
        return node.start_mark.line + 1 if node is not None else None


# ---- parsing and locating ---------------------------------------------------------------------


def _parse(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    try:
        nodes = [n for n in yaml.compose_all(text, Loader=COMPOSER) if n is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = exc.problem or exc.context or "invalid YAML"
        line = mark.line + 1 if mark else None
        raise RoundTripError(f"{source}: YAML syntax: {reason}", problems=[Problem(source, line, "", reason)]) from None
    if len(nodes) > 1:
        line = nodes[1].start_mark.line + 1
        raise RoundTripError(f"{source}: more than one YAML document",
                             problems=[Problem(source, line, "", "more than one YAML document")])  # fmt: skip
    if not nodes:
        return None, None
    try:
        return nodes[0], _construct(nodes[0])
    except yaml.YAMLError as exc:
        raise RoundTripError(f"{source}: YAML value: {exc}", problems=[Problem(source, None, "", str(exc))]) from None


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _kind(node: yaml.Node | None) -> str:
    return {yaml.MappingNode: "mapping", yaml.SequenceNode: "sequence"}.get(type(node), "scalar")


def _put(data: Any, path: PathKey, value: Any) -> None:
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value


def _dict_at(data: Any, path: PathKey) -> dict:
    for part in path:
        data = data[part]
    if data is None or not isinstance(data, dict):
        raise TypeError("not a mapping")
    return data


def _list_at(data: Any, path: PathKey) -> list:
    for part in path:
        data = data[part]
    if not isinstance(data, list):
        raise TypeError("not a sequence")
    return data


def _last_leaf_end(node: yaml.Node) -> int:
    """Where the last value of a block collection really ends (PyYAML's own end mark for a block
    collection lies past trailing comments and blank lines, which belong to what follows)."""
    if isinstance(node, yaml.MappingNode) and node.value and not node.flow_style:
        return _last_leaf_end(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and node.value and not node.flow_style:
        return _last_leaf_end(node.value[-1])
    return node.end_mark.index


def _block_scalar_end(text: str, start: int, end: int) -> int:
    """The end of a `|`/`>` scalar's last non-blank line: the blank lines PyYAML counts in stay put."""
    lines = text[start:end].splitlines(keepends=True)
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    return start + sum(len(line) for line in lines)


def _block_content_col(text: str, start: int, end: int) -> int | None:
    for line in text[start:end].splitlines()[1:]:
        if line.strip():
            return len(line) - len(line.lstrip(" "))
    return None
