"""vCards in and out: build 4.0 (or 3.0), read 3.0 and 4.0 from any client, revise without loss.

Pure functions over text. Reading never raises: a card that vobject refuses is read again by a
small lenient reader, and whatever could not be read is listed in `Contact.problems`. Values are
cleaned before they are written, so a newline or a control character inside a name or a note can
never start a property of its own (vobject escapes newlines; it does not touch the other line
breaks some readers honour, such as U+2028 or U+001C, so those become newlines first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

VERSIONS = ("3.0", "4.0")
# A card with a photo or two: iOS and Nextcloud store photos inline (base64), a few MB each.
# Bigger cards are refused by name (docs/calendar.md "Sizes"), never skipped in silence.
MAX_CARD_BYTES = 8 * 1024 * 1024
PRODID = "-//spine-comms//contacts//EN"

TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,31}$")
# Characters some readers treat as line ends (str.splitlines does): they become "\n", then escaped.
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# Every other control character (C0 but tab, DEL, C1) is dropped: no vCard value needs one.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")
# Type names that say nothing a person would choose (iOS writes INTERNET on every email).
_NOISE_TYPES = {"internet", "pref", "voice", "x400"}


class CardError(ValueError):
    """A value or a card that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Email:
    address: str
    types: tuple[str, ...] = ()
    preferred: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "types": list(self.types), "preferred": self.preferred}


@dataclass(frozen=True)
class Phone:
    number: str
    types: tuple[str, ...] = ()
    preferred: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "types": list(self.types), "preferred": self.preferred}


@dataclass
class Contact:
    uid: str | None = None
    full_name: str = ""
    given: str = ""
    family: str = ""
    emails: list[Email] = field(default_factory=list)
    phones: list[Phone] = field(default_factory=list)
    org: str | None = None
    note: str | None = None
    version: str | None = None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "full_name": self.full_name,
            "given": self.given,
            "family": self.family,
            "emails": [e.to_dict() for e in self.emails],
            "phones": [p.to_dict() for p in self.phones],
            "org": self.org,
            "note": self.note,
            "version": self.version,
            "problems": list(self.problems),
        }

    def summary(self) -> str:
        """One line, for lists and for the two sides of a conflict."""
        name = self.full_name or " ".join(p for p in (self.given, self.family) if p) or "(no name)"
        parts = [name]
        if self.emails:
            parts.append(", ".join(f"<{e.address}>" for e in self.emails))
        if self.phones:
            parts.append("tel " + ", ".join(p.number for p in self.phones))
        if self.org:
            parts.append(f"org {self.org}")
        if self.note:
            note = one_line(self.note)
            parts.append("note " + (note if len(note) <= 40 else note[:39] + "…"))
        return " · ".join(parts)

    def matches(self, text: str) -> bool:
        """Case-insensitive substring of the name (FN or N) or of any email address."""
        needle = text.casefold()
        haystack = [self.full_name, self.given, self.family, f"{self.given} {self.family}"]
        haystack += [e.address for e in self.emails]
        return any(needle in value.casefold() for value in haystack if value)


# ---- values from people ------------------------------------------------------------------------------


def clean_text(value: str, *, multiline: bool = False) -> str:
    """A value safe to write: line breaks normalized (kept only when multiline), controls dropped."""
    value = _CONTROLS.sub("", _LINE_BREAKS.sub("\n", value))
    if not multiline:
        value = " ".join(value.split("\n")).strip()
    return value


def one_line(value: str) -> str:
    return " ".join(clean_text(value, multiline=True).split())


def split_name(full_name: str) -> tuple[str, str]:
    """(given, family) from a full name: 'Ada King Lovelace' -> ('Ada King', 'Lovelace'); 'Lovelace, Ada' too."""
    name = clean_text(full_name)
    if "," in name:
        family, _, given = name.partition(",")
        return given.strip(), family.strip()
    words = name.split()
    if len(words) < 2:
        return name, ""
    return " ".join(words[:-1]), words[-1]


def _typed(value: str, what: str) -> tuple[tuple[str, ...], str]:
    """'work:a@b' -> (('work',), 'a@b'); 'work,pref:...' allowed; no prefix -> ((), value)."""
    head, sep, rest = value.partition(":")
    if sep and head.lower() not in ("mailto", "tel") and all(TYPE_NAME.match(t) for t in head.split(",")):
        return tuple(t.lower() for t in head.split(",")), rest.strip()
    if sep and head.lower() in ("mailto", "tel"):
        return (), rest.strip()
    if sep and "@" not in head and what == "email":
        raise CardError(f"email {value!r}: the type before ':' must be a word such as work or home")
    return (), value.strip()


def parse_email_arg(value: str) -> Email:
    """An --email value: 'a@b', 'work:a@b' or 'work,pref:a@b'."""
    types, address = _typed(clean_text(value), "email")
    if not re.fullmatch(r"[^\s@<>\"]{1,64}@[^\s@<>\"]{1,190}", address):
        raise CardError(f"email {value!r}: not an address (expected name@domain, optionally type:name@domain)")
    return Email(address, tuple(t for t in types if t != "pref"), "pref" in types)


def parse_phone_arg(value: str) -> Phone:
    """A --phone value: '+1 555 0100', 'cell:+1 555 0100' or 'work,voice:...'."""
    types, number = _typed(clean_text(value), "phone")
    if not re.fullmatch(r"[0-9A-Za-z+()*#.,;/ -]{1,64}", number) or not re.search(r"[0-9]", number):
        raise CardError(f"phone {value!r}: not a phone number (digits, spaces, + ( ) - . # *; optionally cell:...)")
    return Phone(number, tuple(t for t in types if t != "pref"), "pref" in types)


def normalize_version(version: str) -> str:
    wanted = {"3": "3.0", "3.0": "3.0", "4": "4.0", "4.0": "4.0"}.get(version.strip())
    if wanted is None:
        raise CardError(f"vCard version {version!r}: use 3.0 or 4.0")
    return wanted


# ---- writing -------------------------------------------------------------------------------------------


def build(contact: Contact, version: str = "4.0") -> str:
    """A new vCard for `contact` (UID, FN and N always; the rest when set)."""
    import vobject

    version = normalize_version(version)
    if not contact.uid:
        raise CardError("a card needs a UID")
    card = vobject.vCard()
    card.add("version").value = version
    card.add("prodid").value = PRODID
    card.add("uid").value = clean_text(contact.uid)
    _set_names(card, contact.full_name, contact.given, contact.family)
    for email in contact.emails:
        _add_email(card, email, version)
    for phone in contact.phones:
        _add_phone(card, phone, version)
    if contact.org:
        card.add("org").value = [clean_text(contact.org)]
    if contact.note:
        card.add("note").value = clean_text(contact.note, multiline=True)
    return _serialize(card)


@dataclass
class Changes:
    """What an update sets (None: leave as is; "" for org/note: remove), adds and removes."""

    full_name: str | None = None
    given: str | None = None
    family: str | None = None
    emails: list[Email] | None = None  # replaces every email
    add_emails: list[Email] = field(default_factory=list)
    remove_emails: list[str] = field(default_factory=list)
    phones: list[Phone] | None = None  # replaces every phone
    add_phones: list[Phone] = field(default_factory=list)
    remove_phones: list[str] = field(default_factory=list)
    org: str | None = None
    note: str | None = None

    def empty(self) -> bool:
        return self == Changes()


def revise(text: str | bytes, changes: Changes) -> tuple[str, list[str]]:
    """The stored card with `changes` applied, every other property kept (photos, addresses, X-...).

    Returns the new text and notes on what could not be done (an address to remove that was not
    there). Raises CardError when the card cannot be read strictly: rewriting it from a lenient
    reading would drop what that reading missed.
    """
    text = _decode(text)
    media = _inline_media(text)
    card = _strict(_INLINE_MEDIA.sub("", text) if media else text)
    if card is None:
        raise CardError("the stored card is not a valid vCard, so rewriting it could lose data; fix it by hand")
    version = _first_value(card, "version") or "3.0"
    version = version if version in VERSIONS else "3.0"
    notes: list[str] = []
    if changes.full_name is not None or changes.given is not None or changes.family is not None:
        current = _read_component(card)
        full = changes.full_name if changes.full_name is not None else current.full_name
        if changes.full_name is not None and changes.given is None and changes.family is None:
            given, family = split_name(full)
        else:
            given = changes.given if changes.given is not None else current.given
            family = changes.family if changes.family is not None else current.family
        _set_names(card, full, given, family)
    _revise_list(card, "email", changes.emails, changes.add_emails, changes.remove_emails, version, notes)
    _revise_list(card, "tel", changes.phones, changes.add_phones, changes.remove_phones, version, notes)
    for name, value, multiline in (("org", changes.org, False), ("note", changes.note, True)):
        if value is None:
            continue
        _remove_all(card, name)
        if value:
            card.add(name).value = [clean_text(value)] if name == "org" else clean_text(value, multiline=multiline)
    return _with_media(_serialize(card), media), notes


def _set_names(card, full_name: str, given: str, family: str) -> None:
    import vobject

    full = clean_text(full_name) or " ".join(p for p in (clean_text(given), clean_text(family)) if p)
    if not full:
        raise CardError("a card needs a name (--name, or --given/--family)")
    _remove_all(card, "fn")
    _remove_all(card, "n")
    card.add("fn").value = full
    card.add("n").value = vobject.vcard.Name(family=clean_text(family), given=clean_text(given))


def _type_params(types: tuple[str, ...], preferred: bool, version: str) -> dict[str, list[str]]:
    if version == "3.0":
        shown = [t.upper() for t in types] + (["pref"] if preferred else [])
        return {"TYPE": shown} if shown else {}
    params = {"TYPE": list(types)} if types else {}
    if preferred:
        params["PREF"] = ["1"]
    return params


def _add_email(card, email: Email, version: str) -> None:
    line = card.add("email")
    line.value = clean_text(email.address)
    line.params.update(_type_params(email.types, email.preferred, version))


def _add_phone(card, phone: Phone, version: str) -> None:
    line = card.add("tel")
    line.value = clean_text(phone.number)
    line.params.update(_type_params(phone.types, phone.preferred, version))


def _revise_list(card, name, replace, add, remove, version, notes) -> None:
    adder = _add_email if name == "email" else _add_phone
    what = "email" if name == "email" else "phone"
    if replace is not None:
        _remove_all(card, name)
        for item in replace:
            adder(card, item, version)
    for gone in remove:
        key = _compare_key(gone, what)
        lines = [line for line in card.contents.get(name, []) if _compare_key(str(line.value), what) == key]
        if not lines:
            notes.append(f"{what} {gone} was not on the card")
        for line in lines:
            card.remove(line)
    present = {_compare_key(str(line.value), what) for line in card.contents.get(name, [])}
    for item in add:
        value = item.address if name == "email" else item.number
        if _compare_key(value, what) in present:
            notes.append(f"{what} {value} was already on the card")
            continue
        adder(card, item, version)


def _compare_key(value: str, what: str) -> str:
    value = value.strip()
    if what == "phone":
        return re.sub(r"[^0-9+A-Za-z]", "", value.removeprefix("tel:"))
    return value.removeprefix("mailto:").casefold()


def _remove_all(card, name: str) -> None:
    for line in list(card.contents.get(name, [])):
        card.remove(line)


def _serialize(card) -> str:
    try:
        text = card.serialize(validate=False)
    except Exception as exc:  # vobject raises bare Exceptions for values it cannot write
        raise CardError(f"the card cannot be written as a vCard: {exc}") from None
    if len(text.encode()) > MAX_CARD_BYTES:
        raise CardError(f"the card would be {len(text.encode())} bytes; the limit is {MAX_CARD_BYTES}")
    return text


# ---- reading -------------------------------------------------------------------------------------------


def parse(data: str | bytes) -> Contact:
    """Read a vCard (3.0, 4.0, and 2.1 as far as it goes). Never raises."""
    try:
        text = _decode(data)
        size = len(text.encode("utf-8", errors="replace"))
        if size > MAX_CARD_BYTES:
            return Contact(problems=[f"the card is {size} bytes, over the limit of {MAX_CARD_BYTES}: not read"])
        card = _strict(_without_inline_media(text))
        if card is not None:
            contact = _read_component(card)
        else:
            contact = _read_leniently(text)
            contact.problems.insert(0, "not a strictly valid vCard; read leniently")
    except Exception as exc:  # a reader bug must not take a whole listing down
        return Contact(problems=[f"unreadable: {exc.__class__.__name__}"])
    if not contact.full_name and not contact.given and not contact.family:
        contact.problems.append("no name (FN or N)")
    return contact


# PHOTO, LOGO, SOUND and KEY carry inline base64 (megabytes, for a photo) that a Contact never
# shows; vobject takes seconds per MB to unfold them, so reading skips them (revise keeps them).
# A property line and its folded continuation lines (RFC 6350 3.2; RFC 2426 2.6 for 3.0).
_INLINE_MEDIA = re.compile(
    r"(?im)^(?:[a-z0-9-]+\.)?(?:photo|logo|sound|key)[;:][^\r\n]*"  # the property's first line
    r"(?:\r?\n[ \t][^\r\n]*)*(?:\r?\n)?"  # its continuation lines
)


def _inline_media(text: str) -> list[str]:
    """The inline media properties of a large card, as written (folded lines and all)."""
    # vCard 2.1 folds base64 without leading white space: leave those cards whole.
    if len(text) < 64 * 1024 or re.search(r"(?im)^version:\s*2\.1", text):
        return []
    return _INLINE_MEDIA.findall(text)


def _without_inline_media(text: str) -> str:
    return _INLINE_MEDIA.sub("", text) if _inline_media(text) else text


def _with_media(text: str, media: list[str]) -> str:
    """`text` (a serialized card) with the media properties put back as they were, before END:VCARD."""
    if not media:
        return text
    end = text.rstrip().rfind("END:VCARD")
    kept = "".join(re.sub(r"\r?\n", "\r\n", m.rstrip("\r\n")) + "\r\n" for m in media)
    out = text[:end] + kept + text[end:]
    if len(out.encode()) > MAX_CARD_BYTES:
        raise CardError(f"the card would be {len(out.encode())} bytes; the limit is {MAX_CARD_BYTES}")
    return out


def _decode(data: str | bytes) -> str:
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    return data.lstrip("\ufeff")


def _strict(text: str):
    import vobject

    try:
        card = vobject.readOne(text, ignoreUnreadable=False)
    except Exception:  # vobject raises ParseError, StopIteration, ValueError, UnicodeError ...
        return None
    return card if getattr(card, "name", "") == "VCARD" else None


def _first_value(card, name: str) -> str | None:
    lines = card.contents.get(name) or []
    return _as_text(lines[0].value) if lines else None


def _as_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ";".join(_as_text(v) for v in value if v)
    if isinstance(value, bytes):
        return ""
    return str(value)


def _types(params: dict[str, list[str]]) -> tuple[tuple[str, ...], bool]:
    raw: list[str] = []
    for key, values in params.items():
        if key.upper() == "TYPE":
            for value in values:
                raw += [v.strip().lower() for v in str(value).split(",") if v.strip()]
        elif key.upper() == "PREF":
            raw.append("pref")
        elif not values:  # vCard 2.1 bare parameters: EMAIL;HOME;PREF:...
            raw.append(key.lower())
    preferred = "pref" in raw
    return tuple(dict.fromkeys(t for t in raw if t not in _NOISE_TYPES)), preferred


def _read_component(card) -> Contact:
    contact = Contact(version=_first_value(card, "version"), uid=_first_value(card, "uid"))
    contact.full_name = one_line(_first_value(card, "fn") or "")
    names = card.contents.get("n") or []
    if names:
        value = names[0].value
        if hasattr(value, "family"):
            contact.family, contact.given = one_line(_as_text(value.family)), one_line(_as_text(value.given))
        else:
            from spine_comms.contacts.vcard_lines import split_unescaped

            fields = split_unescaped(_as_text(value), ";")
            contact.family = one_line(fields[0]) if fields else ""
            contact.given = one_line(fields[1]) if len(fields) > 1 else ""
    for line in card.contents.get("email") or []:
        types, preferred = _types(line.params)
        address = one_line(_as_text(line.value)).removeprefix("mailto:")
        if address:
            contact.emails.append(Email(address, types, preferred))
    for line in card.contents.get("tel") or []:
        types, preferred = _types(line.params)
        number = one_line(_as_text(line.value)).removeprefix("tel:")
        if number:
            contact.phones.append(Phone(number, types, preferred))
    orgs = card.contents.get("org") or []
    if orgs:  # ORG is a list of units (company; department), shown as one line
        units = orgs[0].value if isinstance(orgs[0].value, list) else [orgs[0].value]
        contact.org = one_line(", ".join(_as_text(u) for u in units if u)) or None
    note = _first_value(card, "note")
    contact.note = clean_text(note, multiline=True) if note else None
    contact.uid = one_line(contact.uid) if contact.uid else None
    return contact


# Cards vobject refuses: read line by line (vcard_lines), keeping what can be read.


def _read_leniently(text: str) -> Contact:
    from spine_comms.contacts.vcard_lines import content_lines, split_unescaped, unescape

    contact = Contact()
    seen = False
    for name, params, value in content_lines(text):
        seen = True
        types, preferred = _types(params)
        shown = one_line(unescape(value))
        if name == "version" and contact.version is None:
            contact.version = value.strip()
        elif name == "uid" and contact.uid is None:
            contact.uid = shown or None
        elif name == "fn" and not contact.full_name:
            contact.full_name = shown
        elif name == "n" and not (contact.given or contact.family):
            fields = split_unescaped(value, ";")
            contact.family = one_line(fields[0])
            contact.given = one_line(fields[1]) if len(fields) > 1 else ""
        elif name == "email" and shown:
            contact.emails.append(Email(shown.removeprefix("mailto:"), types, preferred))
        elif name == "tel" and shown:
            contact.phones.append(Phone(shown.removeprefix("tel:"), types, preferred))
        elif name == "org" and contact.org is None:
            contact.org = one_line(", ".join(p for p in split_unescaped(value, ";") if p)) or None
        elif name == "note" and contact.note is None:
            contact.note = clean_text(unescape(value), multiline=True) or None
    if not seen:
        contact.problems.append("no BEGIN:VCARD with properties")
    return contact
