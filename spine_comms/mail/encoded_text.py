"""Header and body text from the outside made into clean str: charsets, 8-bit headers, RFC 2047.

Unknown charsets read as UTF-8, lying ones detected (strict first, then UTF-8,
then replacement), codecs that are not honest text encodings refused. Encoded
words are decoded once, never recursively, within a count bound. Nothing here
raises on what a message contains; trouble goes into the caller's `problems`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
from email.message import Message

from spine_comms.mail.attachments import raw_values, strip_controls

MAX_HEADER_CHARS = 64 * 1024  # of one header value, before any decoding
MAX_ENCODED_WORDS = 400
# Charsets that are Python codecs but not text encodings a mail can honestly declare (or that are slow or odd).
_REFUSED_CHARSETS = {"punycode", "idna", "unicode_escape", "raw_unicode_escape", "undefined", "raw-unicode-escape"}
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")


def _codec(charset: str | None) -> str | None:
    """The Python codec for a declared charset, or None when unknown or refused."""
    name = (charset or "").strip().strip('"').split("*", 1)[0].lower()  # RFC 2231 language suffix
    if not name or len(name) > 64:
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CHARSETS:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None, problems: list[str], what: str) -> str:
    """Bytes in a declared charset as text: unknown charsets as UTF-8, lies detected, never raising."""
    codec = _codec(charset or "us-ascii")  # RFC 2045: no charset means US-ASCII
    if codec is None:
        if charset:
            problems.append(f"{what}: unknown charset {one_line(charset, 60)!r}, read as UTF-8")
        codec = "utf-8"
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError, ValueError):
        pass
    except Exception:  # a codec failing in an unusual way is still only a decoding failure
        codec = "utf-8"
    try:
        text = data.decode("utf-8")
        problems.append(f"{what}: not valid {codec}; it was UTF-8")
        return text
    except UnicodeDecodeError:
        pass
    if codec == "ascii":  # 8-bit text with no honest charset: most often Windows-1252 (a superset of Latin-1)
        problems.append(f"{what}: 8-bit text declared as ASCII; read as Windows-1252")
        return data.decode("cp1252", "replace")
    problems.append(f"{what}: not valid {codec}; undecodable bytes replaced")
    try:
        return data.decode(codec, "replace")
    except Exception:
        return data.decode("utf-8", "replace")


def one_line(text: str, limit: int) -> str:
    return strip_controls(" ".join(str(text).split()))[:limit]


def header_str(value: object) -> str:
    """A raw header value as str: 8-bit bytes (surrogate-escaped by the parser) read as UTF-8."""
    text = str(value) if value is not None else ""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def decode_words(text: str, problems: list[str]) -> str:
    """RFC 2047 encoded words decoded once (never recursively), whitespace between adjacent ones dropped."""
    out: list[str] = []
    last = 0
    previous_was_word = False
    for count, match in enumerate(_ENCODED_WORD.finditer(text)):
        if count >= MAX_ENCODED_WORDS:
            problems.append(f"more than {MAX_ENCODED_WORDS} encoded words; the rest left as they are")
            break
        between = text[last : match.start()]
        if not (previous_was_word and between.strip() == ""):
            out.append(between)
        charset, encoding, payload = match.groups()
        try:
            if encoding in "bB":
                cleaned = re.sub(r"[^A-Za-z0-9+/]", "", payload)
                try:
                    raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
                except binascii.Error:
                    raw = base64.b64decode(cleaned[: len(cleaned) // 4 * 4])
                    problems.append("an encoded word held invalid base64")
            else:
                raw = quopri.decodestring(payload.replace("_", " ").encode("ascii", "replace"), header=True)
            out.append(decode_bytes(raw, charset, problems, "encoded word"))
        except Exception:
            problems.append("an encoded word could not be decoded; kept as written")
            out.append(match.group(0))
        last = match.end()
        previous_was_word = True
    out.append(text[last:])
    return "".join(out)


def raw_header(msg: Message, name: str, problems: list[str], *, all_values: bool = False) -> list[str]:
    values = raw_values(msg, name)
    result = []
    for value in values if all_values else values[:1]:
        text = header_str(value)
        if len(text) > MAX_HEADER_CHARS:
            problems.append(f"{name} header longer than {MAX_HEADER_CHARS} characters was cut")
            text = text[:MAX_HEADER_CHARS]
        result.append(text)
    return result
