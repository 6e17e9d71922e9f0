"""One normal form for the DNS records Stalwart recommends: (type, name, value).

0.16 gives BIND zone text (`x:Domain.dnsZoneFile`: absolute names, no TTLs, long TXT
split into 255-byte strings inside parentheses); 0.10-0.15 give a JSON list of
{type, name, content} with FQDNs and unsplit TXT. Both end up as DnsRecord with lower-case
names without the trailing dot, TXT joined into one unquoted string, and host names in
MX/CNAME/SRV values without the trailing dot, so they compare with the DNS client's answers.
"""

from __future__ import annotations

from spine_comms.protocols.stalwart.model import DnsRecord

CLASSES = {"IN", "CH", "HS"}
# Values whose last field is a host name.
HOST_LAST = {"MX", "CNAME", "NS", "PTR", "SRV", "DNAME"}


class ZoneSyntaxError(ValueError):
    pass


def _tokens(text: str) -> list[list[tuple[str, bool]]]:
    """Logical lines of (token, quoted) pairs: comments dropped, ( ) continuations joined.

    A line that starts with blank space gets an empty first token: BIND's "same owner as before".
    """
    lines: list[list[tuple[str, bool]]] = []
    current: list[tuple[str, bool]] = []
    depth = 0
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        ch = text[i]
        if at_line_start and depth == 0:
            at_line_start = False
            if ch in " \t" and current == []:
                current.append(("", False))
        if ch == "\n":
            if depth == 0:
                if any(tok for tok, _ in current) or any(q for _, q in current):
                    lines.append(current)
                current = []
                at_line_start = True
            i += 1
        elif ch in " \t\r":
            i += 1
        elif ch == ";":
            while i < n and text[i] != "\n":
                i += 1
        elif ch == "(":
            depth += 1
            i += 1
        elif ch == ")":
            if depth == 0:
                raise ZoneSyntaxError("')' without '('")
            depth -= 1
            i += 1
        elif ch == '"':
            i += 1
            out = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    if text[i + 1 : i + 4].isdigit() and len(text[i + 1 : i + 4]) == 3:
                        out.append(chr(int(text[i + 1 : i + 4])))
                        i += 4
                        continue
                    out.append(text[i + 1])
                    i += 2
                    continue
                out.append(text[i])
                i += 1
            if i >= n:
                raise ZoneSyntaxError("unterminated quoted string")
            current.append(("".join(out), True))
            i += 1
        else:
            start = i
            while i < n and text[i] not in ' \t\r\n;()"':
                i += 1
            current.append((text[start:i], False))
    if depth:
        raise ZoneSyntaxError("'(' without ')'")
    if any(tok for tok, _ in current):
        lines.append(current)
    return lines


def _name(name: str) -> str:
    return name.rstrip(".").lower()


def _host_value(rtype: str, fields: list[str]) -> str:
    if rtype in HOST_LAST and fields:
        fields = [*fields[:-1], _name(fields[-1])]
    return " ".join(fields)


def parse_zone_text(text: str, origin: str | None = None) -> list[DnsRecord]:
    """Records from BIND zone text. TTL and class are optional; $TTL/$ORIGIN are honoured."""
    records: list[DnsRecord] = []
    owner: str | None = None
    for line in _tokens(text):
        first, first_quoted = line[0]
        if not first_quoted and first.upper() == "$ORIGIN" and len(line) > 1:
            origin = _name(line[1][0])
            continue
        if not first_quoted and first.startswith("$"):
            continue  # $TTL and friends carry nothing we keep
        if first == "":
            if owner is None:
                raise ZoneSyntaxError("a record without an owner name")
            rest = line[1:]
        else:
            owner = _absolute(first, origin)
            rest = line[1:]
        # Skip an optional TTL and class, in either order.
        while rest and not rest[0][1] and (rest[0][0].isdigit() or rest[0][0].upper() in CLASSES):
            rest = rest[1:]
        if not rest:
            raise ZoneSyntaxError(f"{owner}: no record type")
        rtype = rest[0][0].upper()
        data = rest[1:]
        if rtype == "TXT" or rtype == "SPF":
            value = "".join(tok for tok, _ in data)
        else:
            fields = [tok for tok, _ in data]
            if rtype in HOST_LAST and fields:
                fields[-1] = _absolute(fields[-1], origin)
            value = " ".join(fields)
        records.append(DnsRecord(rtype, owner, value))
    return records


def _absolute(name: str, origin: str | None) -> str:
    if name == "@":
        if not origin:
            raise ZoneSyntaxError("'@' without an origin")
        return origin
    if name.endswith(".") or not origin:
        return _name(name)
    return _name(f"{name}.{origin}")


def from_rest_records(items: list[dict]) -> list[DnsRecord]:
    """Records from 0.10-0.15's GET /api/dns/records/{domain}: [{type, name, content}]."""
    records = []
    for item in items:
        rtype = str(item.get("type", "")).upper()
        content = str(item.get("content", ""))
        value = _unquote_txt(content) if rtype in ("TXT", "SPF") else _host_value(rtype, content.split())
        records.append(DnsRecord(rtype, _name(str(item.get("name", ""))), value))
    return records


def _unquote_txt(content: str) -> str:
    """0.15 sends TXT unsplit and unquoted; tolerate a quoted, split form all the same."""
    stripped = content.strip()
    if stripped.startswith('"') and stripped.endswith('"'):
        return "".join(tok for line in _tokens(stripped) for tok, _ in line)
    return content


def split_txt(value: str, size: int = 255) -> list[str]:
    """A TXT value as the <=255-byte strings DNS carries (ASCII values, as DKIM/SPF/DMARC are)."""
    data = value.encode()
    return [data[i : i + size].decode() for i in range(0, len(data), size)] or [""]
