"""What kind of mail this is: normal, a bounce, an auto-reply, a DMARC aggregate report, a list message.

An agent must not answer a bounce or an auto-reply (mail loops), should file a
DMARC report rather than read it, and may treat list traffic differently. The
signals are headers and MIME structure the sender chose, so nothing here is a
verdict on trust: a forged `Auto-Submitted` only makes us quieter.

Order matters: a DSN is a bounce even when it also says Auto-Submitted (RFC 3464
reports do), a DMARC report is a report even when sent by an automaton, an
auto-reply from a list is an auto-reply. `classify` never raises: any failure
degrades to the kind found so far with the trouble in `details["problems"]`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser

from spine_comms.mail.attachments import content_type, leaf_bytes, raw_values, strip_controls, walk_parts

MAX_REPORT_XML = 5 * 2**20  # a decompressed DMARC report larger than this is refused (zip bombs)
MAX_ZIP_MEMBERS = 8
MAX_DETAIL_CHARS = 500
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_MSGID = re.compile(r"<[^<>\s]{1,900}>")
_BOUNCE_SENDERS = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status )?notification|delivery (has )?failed|failure notice|returned mail|"
    r"mail delivery (failed|system)|non[- ]?delivery",
    re.IGNORECASE,
)
_REPORT_NAME = re.compile(r"\.(zip|gz|gzip|xml)$", re.IGNORECASE)
_REPORT_TYPES = {"application/zip", "application/gzip", "application/x-gzip", "application/x-zip-compressed"}
_REPORT_TYPES |= {"application/xml", "text/xml", "application/octet-stream", "application/x-zip"}


@dataclass
class Classification:
    kind: str = "normal"  # normal | bounce | auto_reply | dmarc_report | mailing_list
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "details": dict(self.details)}


def _text(value: object, limit: int = MAX_DETAIL_CHARS) -> str:
    """A header value as one clean line: 8-bit bytes as UTF-8, no controls, bounded."""
    text = str(value) if value is not None else ""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except Exception:
        text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    return strip_controls(" ".join(text.split()))[:limit]


def _get(msg: Message, name: str) -> str:
    values = raw_values(msg, name)
    return _text(values[0]) if values else ""


def classify(message: Message) -> Classification:
    """The kind of `message` and what was found out about it. Never raises."""
    problems: list[str] = []
    try:
        result = _classify(message, problems)
    except Exception as exc:  # a message the checks below did not foresee: say so, do not stop the batch
        problems.append(f"classification failed ({type(exc).__name__})")
        result = Classification("normal", {})
    if problems:
        result.details["problems"] = problems[:20]
    return result


def _classify(msg: Message, problems: list[str]) -> Classification:
    parts = list(walk_parts(msg, []))  # cuts are the parser's to report, not the classification's
    bounce = _bounce(msg, parts, problems)
    if bounce is not None:
        return Classification("bounce", bounce)
    report = _dmarc_report(msg, parts, problems)
    if report is not None:
        return Classification("dmarc_report", report)
    reason = _auto_reply_reason(msg)
    if reason:
        return Classification("auto_reply", {"reason": reason})
    listing = _mailing_list(msg)
    if listing is not None:
        return Classification("mailing_list", listing)
    details: dict = {}
    auto = _get(msg, "auto-submitted").lower()
    if auto and not auto.startswith("no"):
        details["auto_submitted"] = auto  # e.g. auto-generated alerts: not a reply, but never answer it
    return Classification("normal", details)


# ---- bounces (RFC 3464) -----------------------------------------------------------------------------


def _field_blocks(part: Message) -> list[Message]:
    """The field groups of a message/delivery-status part (compat32 parses them into messages)."""
    try:
        payload = part.get_payload()
    except Exception:
        return []
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    if isinstance(payload, str):
        # An unparsed body (e.g. the part had a transfer encoding): split it into groups ourselves.
        text = payload
        if str(part.get("content-transfer-encoding", "")).strip().lower() in ("base64", "quoted-printable"):
            text = leaf_bytes(part, []).decode("utf-8", "replace")
        groups = re.split(r"\r?\n\s*\r?\n", text[:200_000])
        return [HeaderParser().parsestr(group.strip() + "\n") for group in groups if group.strip()]
    return []


def _typed_value(value: str) -> str:
    """`rfc822; user@example.org` -> `user@example.org`."""
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _original_message_id(parts: list[tuple[Message, int]]) -> str | None:
    for part, _ in parts:
        ctype = content_type(part)
        if ctype == "text/rfc822-headers":
            headers = HeaderParser().parsestr(leaf_bytes(part, []).decode("utf-8", "replace")[:200_000])
            found = _MSGID.search(_get(headers, "message-id"))
            if found:
                return found.group(0)
        elif ctype in ("message/rfc822", "message/global"):
            try:
                inner = part.get_payload()
            except Exception:
                continue
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found = _MSGID.search(_get(inner[0], "message-id"))
                if found:
                    return found.group(0)
    return None


def _bounce(msg: Message, parts: list[tuple[Message, int]], problems: list[str]) -> dict | None:
    status_parts = [
        p for p, _ in parts if content_type(p) in ("message/delivery-status", "message/global-delivery-status")
    ]
    report_type = ""
    with contextlib.suppress(Exception):
        report_type = str(msg.get_param("report-type") or "").lower()
    is_report = content_type(msg) == "multipart/report" and report_type == "delivery-status"
    sender = _get(msg, "from").lower()
    sender_address = re.search(r"[^\s<>\"]+@[^\s<>\"]+", sender)
    heuristic = bool(
        sender_address
        and _BOUNCE_SENDERS.match(sender_address.group(0))
        and _BOUNCE_SUBJECT.search(_get(msg, "subject"))
    )
    if not (status_parts or is_report or heuristic):
        return None
    details: dict = {
        "action": None, "status": None, "recipient": None, "original_message_id": None,
        "reporting_mta": None, "original_envelope_id": None, "recipients": [],
    }  # fmt: skip
    if status_parts:
        blocks = _field_blocks(status_parts[0])
        if blocks:
            details["reporting_mta"] = _typed_value(_get(blocks[0], "reporting-mta")) or None
            # RFC 3464 2.2.1: the ENVID the sender gave (RFC 3461 xtext), which ties the DSN to its send.
            details["original_envelope_id"] = _get(blocks[0], "original-envelope-id").strip()[:100] or None
        for block in blocks[1:] or blocks[:1]:
            recipient = _typed_value(_get(block, "final-recipient") or _get(block, "original-recipient"))
            action = _get(block, "action").lower() or None
            status = _STATUS.search(_get(block, "status"))
            if recipient or action:
                details["recipients"].append(
                    {"recipient": recipient or None, "action": action, "status": status.group(1) if status else None}
                )
        details["recipients"] = details["recipients"][:50]
        chosen = next((r for r in details["recipients"] if r["action"] == "failed"), None)
        chosen = chosen or (details["recipients"][0] if details["recipients"] else None)
        if chosen:
            details.update(action=chosen["action"], status=chosen["status"], recipient=chosen["recipient"])
    else:
        problems.append("no message/delivery-status part: a bounce recognised from its sender and subject")
        details["heuristic"] = True
        for part, _ in parts:
            if content_type(part) == "text/plain":
                found = _STATUS.search(leaf_bytes(part, []).decode("utf-8", "replace")[:100_000])
                if found:
                    details["status"] = found.group(1)
                    details["action"] = "failed" if found.group(1).startswith("5") else None
                break
    details["original_message_id"] = _original_message_id(parts)
    return details


# ---- DMARC aggregate reports (RFC 7489 appendix C) --------------------------------------------------------


def _capped_gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(data, MAX_REPORT_XML + 1)
    if len(out) > MAX_REPORT_XML or inflater.unconsumed_tail:
        raise ValueError(f"the gzip expands beyond {MAX_REPORT_XML} bytes (refused)")
    return out


def _capped_unzip(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if not members or len(members) > MAX_ZIP_MEMBERS:
            raise ValueError(f"the zip holds {len(members)} files")
        member = next((m for m in members if m.filename.lower().endswith(".xml")), members[0])
        if member.file_size > MAX_REPORT_XML:
            raise ValueError(f"the zip member claims {member.file_size} bytes (refused)")
        with archive.open(member) as stream:  # read bounded whatever the header claimed
            out = stream.read(MAX_REPORT_XML + 1)
        if len(out) > MAX_REPORT_XML:
            raise ValueError(f"the zip expands beyond {MAX_REPORT_XML} bytes (refused)")
        return out


def report_xml(payload: bytes) -> bytes:
    """The XML of a report attachment (zip, gzip or plain), decompressed within MAX_REPORT_XML."""
    if payload[:4] == b"PK\x03\x04":
        return _capped_unzip(payload)
    if payload[:2] == b"\x1f\x8b":
        return _capped_gunzip(payload)
    if len(payload) > MAX_REPORT_XML:
        raise ValueError("the XML is larger than the cap")
    return payload


def _epoch(text: str | None) -> str | None:
    try:
        seconds = int((text or "").strip())
        return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        return None


def parse_report(xml: bytes) -> dict:
    import xml.etree.ElementTree as ET

    head = xml[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in xml.lower():
        raise ValueError("the report declares a DTD or entities (refused: entity expansion)")
    root = ET.fromstring(xml)

    def find(path: str) -> str | None:
        node = root
        for step in path.split("/"):
            node = next((child for child in node if str(child.tag).rsplit("}", 1)[-1] == step), None)
            if node is None:
                return None
        return _text(node.text or "", 300) or None

    if str(root.tag).rsplit("}", 1)[-1] != "feedback":
        raise ValueError(f"the XML root is <{_text(root.tag, 50)}>, not <feedback>")
    records = sum(1 for child in root if str(child.tag).rsplit("}", 1)[-1] == "record")
    return {
        "org_name": find("report_metadata/org_name"),
        "report_id": find("report_metadata/report_id"),
        "domain": find("policy_published/domain"),
        "begin": _epoch(find("report_metadata/date_range/begin")),
        "end": _epoch(find("report_metadata/date_range/end")),
        "records": records,
    }


def _dmarc_report(msg: Message, parts: list[tuple[Message, int]], problems: list[str]) -> dict | None:
    subject = _get(msg, "subject").lower()
    says_report = "report domain:" in subject or ("dmarc" in subject and "report" in subject)
    candidates = []
    for part, _ in parts:
        if part.is_multipart():
            continue
        try:
            name = str(part.get_filename() or part.get_param("name") or "")
        except Exception:
            name = ""
        ctype = content_type(part)
        named = bool(_REPORT_NAME.search(name)) and name.count("!") >= 2  # receiver!domain!begin!end[!id].zip
        if named or (says_report and ctype in _REPORT_TYPES and (name or ctype != "text/xml")):
            candidates.append(part)
    if not candidates and not says_report:
        return None
    if not candidates:
        return None if "report domain:" not in subject else {"error": "no report attachment found"}
    details: dict = {"org_name": None, "report_id": None, "domain": None, "begin": None, "end": None}
    try:
        details.update(parse_report(report_xml(leaf_bytes(candidates[0], problems))))
    except Exception as exc:
        said = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        reason = _text(said, 200)
        details["error"] = reason
        problems.append(f"DMARC report not read: {reason}")
    return details


# ---- auto-replies (RFC 3834 and the usual vendor headers) and lists (RFC 2919, 2369) --------------------------


def _auto_reply_reason(msg: Message) -> str | None:
    auto = _get(msg, "auto-submitted").lower()
    if auto.startswith("auto-replied"):
        return "auto-submitted: auto-replied"
    if _get(msg, "x-autoreply"):
        return "x-autoreply"
    if _get(msg, "x-autorespond"):
        return "x-autorespond"
    if _get(msg, "x-autogenerated").lower() == "reply":
        return "x-autogenerated: reply"
    for name in ("precedence", "x-precedence"):
        if _get(msg, name).lower() == "auto_reply":
            return f"{name}: auto_reply"
    if _get(msg, "x-ms-exchange-inbox-rules-loop") or _get(msg, "x-ms-exchange-generated-message-source"):
        return "x-ms-exchange automatic reply"
    return None


def _mailing_list(msg: Message) -> dict | None:
    list_id = _get(msg, "list-id")
    precedence = _get(msg, "precedence").lower()
    if not (list_id or _get(msg, "list-post") or precedence in ("list", "bulk")):
        return None
    found = re.search(r"<([^<>\s]+)>", list_id)
    return {
        "list_id": found.group(1).lower() if found else (list_id or None),
        "list_post": _get(msg, "list-post") or None,
        "list_unsubscribe": _get(msg, "list-unsubscribe") or None,
        "precedence": precedence or None,
    }
