"""The leaves of a MIME tree, walked within bounds, and the attachments they become.

A message is text from the outside: its tree may be thousands of levels deep,
its names may hold `../`, NUL, a right-to-left override or `CON`, its payloads
may be larger than anything we want to decode. Everything here is bounded
(depth, part count, sizes) and nothing raises on what a message contains; what
was odd is said in a `problems` list, one line each.
"""

from __future__ import annotations

import functools
import hashlib
import mimetypes
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message

MAX_DEPTH = 32  # multipart and message/* levels walked; deeper parts are cut (a problem is noted)
MAX_PARTS = 1000  # leaves and containers visited per message
MAX_NAME_CHARS = 120
MAX_NAME_BYTES = 200  # UTF-8 bytes: file systems allow 255, we keep room for a prefix
MAX_EXTENSION_CHARS = 16

# Windows refuses these as file names whatever the extension (`con.txt` too).
_RESERVED = {"con", "prn", "aux", "nul", "clock$", "conin$", "conout$"}
_RESERVED |= {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
_UNSAFE_CHARS = re.compile(r'[<>:"|?*\\/]')
# Bidirectional controls reorder what a person sees ("photo\u202egpj.exe" shows as "photoexe.jpg").
BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])


@dataclass
class Attachment:
    filename: str  # safe: a basename without separators, NUL, control chars, leading dots, reserved names
    original_name: str  # as the message claimed, control chars removed, for display only
    content_type: str
    size: int
    sha256: str
    payload: bytes = field(repr=False, default=b"")
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "filename": self.filename,
            "original_name": self.original_name,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "problems": list(self.problems),
        }


def strip_controls(text: str, *, keep: str = "") -> str:
    """Drop C0/C1 control characters (except those in `keep`) and bidirectional overrides."""
    if text.isascii():  # no bidi controls, and the Cc characters are C0 and DEL: str.translate in C
        return text.translate(_ascii_cc(keep))
    text = text.translate(BIDI_CONTROLS)
    return "".join(ch for ch in text if ch in keep or unicodedata.category(ch) != "Cc")


@functools.cache
def _ascii_cc(keep: str) -> dict[int, None]:
    return {c: None for c in (*range(0x20), 0x7F) if chr(c) not in keep}


def raw_values(msg: Message, name: str) -> list[str]:
    """A header's values exactly as parsed (8-bit bytes still surrogate-escaped), without the policy's rewriting.

    compat32's `get` turns a value holding 8-bit bytes into a Header whose str() has lost them.
    """
    # Indexed once per part: the normalizer and the classifier ask for some forty names, and a
    # scan of every header for each cost a third of a millisecond per message. Parts are not
    # changed after parsing, so the index stays true.
    index = msg.__dict__.get("_spine_raw_index")
    if index is None:
        index = {}
        try:
            for key, value in msg.raw_items():
                index.setdefault(str(key).lower(), []).append(str(value))
        except Exception:
            index = {}
        msg.__dict__["_spine_raw_index"] = index
    return list(index.get(name.lower(), ()))


def walk_parts(
    message: Message, problems: list[str], *, max_depth: int = MAX_DEPTH, into_messages: bool = False
) -> Iterator[tuple[Message, int]]:
    """Every part (containers included) with its depth, depth first, in document order.

    Iterative, so a deep tree cannot exhaust the stack. A message/* part (an attached
    message, a delivery-status) is a leaf unless `into_messages`: its insides belong
    to another message, not to this one's body.
    """
    stack: list[tuple[Message, int]] = [(message, 0)]
    seen = 0
    cut = False
    while stack:
        part, depth = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            problems.append(f"more than {MAX_PARTS} MIME parts; the rest were not read")
            return
        yield part, depth
        if not into_messages and depth and content_type(part).startswith("message/"):
            continue
        try:
            children = part.get_payload() if part.is_multipart() else None
        except Exception:  # a payload the email package cannot hand back: treat as a leaf
            children = None
        if not isinstance(children, list) or not children:
            continue
        if depth + 1 > max_depth:
            if not cut:
                problems.append(f"MIME nesting deeper than {max_depth} levels was cut")
                cut = True
            continue
        stack.extend((child, depth + 1) for child in reversed(children) if isinstance(child, Message))


def content_type(part: Message) -> str:
    try:
        value = part.get_content_type()
    except Exception:
        return "application/octet-stream"
    value = strip_controls(str(value)).strip().lower()
    return value[:100] if re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", value) else "application/octet-stream"


def disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").lower()
    except Exception:
        return ""


def encoded_size_estimate(part: Message) -> int:
    """The decoded size a part will have, guessed from its encoded text without decoding it."""
    try:
        payload = part.get_payload()
    except Exception:
        return 0
    if not isinstance(payload, str | bytes):
        return 0
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte != "base64":
        return len(payload)
    tail = payload[-8:].rstrip() if isinstance(payload, str) else payload[-8:].decode("latin-1").rstrip()
    spaces = sum(payload.count(c) for c in ("\n", "\r", " ", "\t")) if isinstance(payload, str) else 0
    return max(0, (len(payload) - spaces) * 3 // 4 - (len(tail) - len(tail.rstrip("="))))


def leaf_bytes(part: Message, problems: list[str]) -> bytes:
    """The decoded payload of a leaf; message/* parts are re-serialized. Empty on failure (noted)."""
    try:
        if part.is_multipart():
            deep: list[str] = []
            for _ in walk_parts(part, deep, into_messages=True):
                pass
            if deep:  # a message inside a message inside ...: cut rather than recurse without end
                problems.append(f"attached messages nested deeper than {MAX_DEPTH} levels were not kept")
                return b""
            inner = part.get_payload()
            chunks = [sub.as_bytes() for sub in inner if isinstance(sub, Message)]
            return b"\n".join(chunks)
        data = part.get_payload(decode=True)
        if data is None:
            return b""
        return bytes(data)
    except RecursionError:
        problems.append("a part nested too deeply to re-serialize was left empty")
    except Exception as exc:
        problems.append(f"a part could not be decoded ({type(exc).__name__}); it was left empty")
    return b""


def claimed_name(part: Message) -> str | None:
    """The filename the part claims (Content-Disposition filename, else Content-Type name), raw."""
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name is None:
        try:
            name = part.get_param("name")
        except Exception:
            name = None
        if isinstance(name, tuple):  # RFC 2231 triple left undecoded by get_param
            name = name[2]
    if name is None:
        return None
    return str(name)


def _extension_for(ctype: str) -> str:
    ext = mimetypes.guess_extension(ctype, strict=False) or ".bin"
    return ext.lstrip(".") or "bin"


def _cap(stem: str, ext: str) -> str:
    """Shorten the stem so stem + ext fits both the character and the byte limit."""
    while stem and (len(stem) + len(ext) > MAX_NAME_CHARS or len((stem + ext).encode("utf-8")) > MAX_NAME_BYTES):
        stem = stem[:-1]
    return stem + ext


def safe_filename(claimed: str | None, index: int, ctype: str) -> tuple[str, list[str]]:
    """A name that is safe to create in a directory on any OS, and the problems the claimed one had."""
    problems: list[str] = []
    fallback = f"attachment-{index}.{_extension_for(ctype)}"
    if not claimed:
        return fallback, problems
    name = unicodedata.normalize("NFC", claimed)
    if "\x00" in name:
        problems.append("name contained NUL")
    if re.search(r"[\\/]", name):
        problems.append("name contained a path; only its last component was kept")
        name = re.split(r"[\\/]", name)[-1]
    cleaned = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))
    if cleaned != name.replace("\x00", ""):
        problems.append("name contained control or invisible formatting characters (removed)")
    name = _UNSAFE_CHARS.sub("_", cleaned)
    name = re.sub(r"\s+", " ", name)
    stripped = name.strip(" .")
    if stripped != name:
        problems.append("leading or trailing dots or spaces removed")
    name = stripped
    if not name:
        problems.append("nothing usable left of the name")
        return fallback, problems
    if name.split(".")[0].strip().lower() in _RESERVED:
        problems.append("reserved device name")
        name = "_" + name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > MAX_EXTENSION_CHARS:
        stem, ext = name, ""
    else:
        ext = "." + ext
    capped = _cap(stem, ext)
    if capped != name:
        problems.append(f"name shortened to {MAX_NAME_CHARS} characters")
    if not capped.strip(" ."):
        return fallback, problems
    return capped, problems


def make_attachment(payload: bytes, claimed: str | None, index: int, ctype: str) -> Attachment:
    original = strip_controls(claimed or "")[:1000]
    filename, problems = safe_filename(claimed, index, ctype)
    return Attachment(
        filename=filename,
        original_name=original,
        content_type=ctype,
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        payload=payload,
        problems=problems,
    )
