"""The routing contract: `communications.sieve.contract.yaml`.

Per mailbox (a stack mailbox id; login, password and the ManageSieve endpoint
default from the stack contract), the Sieve script's name and an ordered list
of named rules. A rule is `anyof` or `allof` a list of conditions, then its
actions:

    mailboxes:
      - id: ops
        script: spine-routing
        rules:
          - name: alerts
            anyof:
              - {address: From, is: alerts@spine.test}
              - {header: Subject, contains: "[ALERT]"}
            actions:
              - addflag: ["\\\\Flagged"]
              - {fileinto: Alerts, create: true}
              - stop: true

A condition names one of header / address / envelope (one name or a list), one
of is / contains / matches (one value or a list), and optionally `part`
(all | localpart | domain, for address and envelope) and `not: true`.
Values are plain text: the renderer escapes them, and control characters (CR,
LF...) are refused here because a Sieve string cannot carry a bare one.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from spine_comms.contracts.addresses import plain_address
from spine_comms.core.contract_files import CaFile
from spine_comms.core.contracts import ContractModel, unknown_key_message
from spine_comms.core.secrets import check_secret_reference

SIEVE_CONTRACT = "communications.sieve.contract.yaml"
RESERVED_NAMES = {"vacation"}  # Stalwart keeps JMAP's VacationResponse under it (reference/stalwart.md §5)
BACKUP_SUFFIX = ".previous"
MATCH_TYPES = ("is", "contains", "matches")
SUBJECTS = ("header", "address", "envelope")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext
_FLAG = re.compile(r"^\\?[!#$&'+\-.0-9A-Z^_`a-z|~]+$")  # an IMAP flag atom, system flags with their backslash
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # TAB is allowed in a Sieve string; CR, LF and the rest not


def _text(value: str, what: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{what} {value!r} holds a control character (a newline?); Sieve strings cannot carry one")
    return value


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class Condition(ContractModel):
    """One test: `header`/`address`/`envelope` names, a match type and the values it compares with."""

    model_config = ConfigDict(json_schema_extra=lambda schema, _: _or_shorthand(schema, CONDITION_SHORTHAND))

    test: Literal["header", "address", "envelope"]
    """What is tested: a header, an address header, or the SMTP envelope."""
    names: list[str] = Field(min_length=1)
    """The header names (or envelope parts: from, to) tested."""
    match: Literal["is", "contains", "matches"]
    """How values are compared: is (equal), contains, matches (* and ? wildcards)."""
    values: list[str] = Field(min_length=1)
    """The values compared with (any one matching is a match)."""
    part: Literal["all", "localpart", "domain"] = "all"
    """For address and envelope: the whole address, its local part or its domain."""
    negate: bool = False
    """True: the condition holds when the test does not match."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "test" in data:
            return data
        data = dict(data)
        subjects = [k for k in SUBJECTS if k in data]
        matches = [k for k in MATCH_TYPES if k in data]
        if len(subjects) != 1:
            raise ValueError("a condition names exactly one of header, address, envelope")
        if len(matches) != 1:
            raise ValueError("a condition has exactly one of is, contains, matches")
        out = {"test": subjects[0], "names": _listed(data.pop(subjects[0])), "match": matches[0],
               "values": _listed(data.pop(matches[0]))}  # fmt: skip
        if "part" in data:
            out["part"] = data.pop("part")
        if "not" in data:
            out["negate"] = data.pop("not")
        if data:
            raise ValueError("; ".join(unknown_key_message(str(k), CONDITION_KEYS) for k in data))
        return out

    @model_validator(mode="after")
    def _check(self) -> Condition:
        for name in self.names:
            if self.test == "envelope":
                if name.lower() not in ("from", "to"):
                    raise ValueError(f"envelope part {name!r} is not from or to")
            elif not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a header field name")
        if self.test == "header" and self.part != "all":
            raise ValueError("part (localpart, domain) applies to address and envelope, not header")
        for value in self.values:
            _text(value, "value")
        return self

    def to_canonical(self) -> dict:
        names = [n.lower() for n in self.names]  # header names and envelope parts are case-insensitive
        return {"test": self.test, "names": names, "match": self.match, "values": list(self.values),
                "part": self.part, "not": self.negate}  # fmt: skip


ACTIONS = ("fileinto", "addflag", "setflag", "redirect", "keep", "discard", "stop")


class Action(ContractModel):
    """One action of a rule: fileinto, addflag, setflag, redirect, keep, discard or stop."""

    model_config = ConfigDict(json_schema_extra=lambda schema, _: _or_shorthand(schema, ACTION_SHORTHAND))

    kind: Literal["fileinto", "addflag", "setflag", "redirect", "keep", "discard", "stop"]
    """The action."""
    mailbox: str | None = None
    """fileinto: the folder."""
    create: bool = False
    """fileinto :create (RFC 5490): create a missing folder (without it Stalwart delivers to INBOX)."""
    specialuse: str | None = None
    """fileinto :specialuse (RFC 8579), e.g. \\Junk."""
    flags: list[str] = Field(default_factory=list)
    """addflag, setflag: the IMAP flags."""
    address: str | None = None
    """redirect: the address, a plain user@domain within the stack contract's allowed recipient domains."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "kind" in data:
            return data
        data = dict(data)
        kinds = [k for k in ACTIONS if k in data]
        if len(kinds) != 1:
            raise ValueError(f"an action is exactly one of {', '.join(ACTIONS)}")
        kind = kinds[0]
        value = data.pop(kind)
        out: dict[str, Any] = {"kind": kind}
        if kind == "fileinto":
            out["mailbox"] = value
            for key in ("create", "specialuse"):
                if key in data:
                    out[key] = data.pop(key)
        elif kind in ("addflag", "setflag"):
            out["flags"] = _listed(value)
        elif kind == "redirect":
            out["address"] = value
        elif value is not True:
            raise ValueError(f"write `{kind}: true` (it takes no value)")
        if data:
            known = ["create", "specialuse"] if kind == "fileinto" else []
            raise ValueError("; ".join(unknown_key_message(str(k), [*known, *ACTIONS]) for k in data))
        return out

    @model_validator(mode="after")
    def _check(self) -> Action:
        if self.kind == "fileinto":
            if not self.mailbox:
                raise ValueError("fileinto needs a folder name")
            _text(self.mailbox, "folder")
            if self.specialuse is not None and not re.fullmatch(r"\\[A-Za-z]+", self.specialuse):
                raise ValueError(f"specialuse {self.specialuse!r} is not a special-use flag such as \\Junk")
        if self.kind in ("addflag", "setflag"):
            if not self.flags:
                raise ValueError(f"{self.kind} needs at least one flag")
            for flag in self.flags:
                if not _FLAG.match(flag):
                    raise ValueError(f"{flag!r} is not an IMAP flag (\\Flagged, \\Seen, $Label ...)")
        if self.kind == "redirect":
            if not self.address:
                raise ValueError("redirect needs an address")
            if not plain_address(self.address):
                raise ValueError(f"redirect {self.address!r} is not a plain address (user@domain)")
        return self

    def to_canonical(self) -> dict:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "fileinto":
            out.update(mailbox=self.mailbox, create=self.create, specialuse=self.specialuse)
        elif self.kind in ("addflag", "setflag"):
            out["flags"] = list(self.flags)
        elif self.kind == "redirect":
            out["address"] = self.address
        return out


_DELIVERING = ("fileinto", "redirect", "keep")


class Rule(ContractModel):
    """A named rule: anyof or allof its conditions, then its actions."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """The rule's name (it goes in a comment of the script: no spaces, no newline)."""
    anyof: list[Condition] | None = None
    """The rule applies when any of these conditions holds."""
    allof: list[Condition] | None = None
    """The rule applies when all of these conditions hold."""
    actions: list[Action] = Field(min_length=1)
    """What is done, in order."""

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if (self.anyof is None) == (self.allof is None) or not (self.anyof or self.allof):
            raise ValueError("a rule has exactly one of anyof, allof, with at least one condition")
        kinds = [a.kind for a in self.actions]
        if "stop" in kinds[:-1]:
            raise ValueError("stop ends a rule: put it last")
        delivered = False
        for kind in kinds:
            if kind in ("addflag", "setflag") and delivered:
                raise ValueError(
                    f"{kind} after fileinto/redirect/keep does not flag what was already filed (RFC 5232): "
                    f"put {kind} first"
                )
            delivered = delivered or kind in _DELIVERING
        return self

    @property
    def combine(self) -> str:
        return "anyof" if self.anyof is not None else "allof"

    @property
    def conditions(self) -> list[Condition]:
        return self.anyof if self.anyof is not None else self.allof

    def to_canonical(self) -> dict:
        return {"name": self.name, "combine": self.combine,
                "conditions": [c.to_canonical() for c in self.conditions],
                "actions": [a.to_canonical() for a in self.actions]}  # fmt: skip


class ManageSieveEndpoint(ContractModel):
    """Where to manage scripts; each field defaults to the stack contract (the ManageSieve port ...)."""

    host: str | None = None
    """The ManageSieve server; default: the stack contract's host."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Its port; default: the stack contract's ManageSieve port."""
    server_name: str | None = None
    """The certificate name (and SNI); default: the stack contract's."""
    ca_file: CaFile | None = None
    """A PEM file of CA certificates (relative to the root); default: the stack contract's, else the system's."""
    timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    """How long a connection or an answer may take."""
    max_script_bytes: int | None = Field(default=None, gt=0)
    """The server's script size limit in bytes. ManageSieve has no capability that states it and Stalwart's
    HAVESPACE checks only quota and name, so sieve.status takes it from here."""
    server_version: str | None = Field(default=None, pattern=r"^\d+\.\d+(\.\d+)?$")
    """The Stalwart release (0.15.5), when max_script_bytes is not given: 1 MiB up to 0.15, 100 KiB from 0.16."""


class SieveMailbox(ContractModel):
    """The routing of one mailbox."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    """A stack mailbox id; login and password default from the stack contract."""
    login: str | None = None
    """The ManageSieve login; default: the stack mailbox's login, else its address."""
    password_ref: str | None = None
    """A secret reference for its password (env:, file:, cmd:, infisical://); STALWART_<ID>_PASSWORD overrides."""
    managesieve: ManageSieveEndpoint = Field(default_factory=ManageSieveEndpoint)
    """Where and how to reach ManageSieve."""
    script: str = Field(default="spine-routing", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """The script's name on the server."""
    rules: list[Rule] = Field(default_factory=list)
    """The rules, in order."""

    @field_validator("password_ref")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        return check_secret_reference(value)

    @field_validator("script")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in RESERVED_NAMES:
            raise ValueError(f"{value!r} is reserved (Stalwart keeps the JMAP vacation response under it)")
        if value.lower().endswith(BACKUP_SUFFIX):
            raise ValueError(f"names ending in {BACKUP_SUFFIX} are kept for the backup of the previous script")
        return value

    @model_validator(mode="after")
    def _unique_rules(self) -> SieveMailbox:
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique within a mailbox")
        return self

    @property
    def backup_name(self) -> str:
        return self.script + BACKUP_SUFFIX


class SieveContract(ContractModel):
    """communications.sieve.contract.yaml: the Sieve routing of each mailbox."""

    version: int | str
    """The contract's version."""
    mailboxes: list[SieveMailbox] = Field(min_length=1)
    """The mailboxes whose routing is managed."""

    @model_validator(mode="after")
    def _unique_ids(self) -> SieveContract:
        ids = [m.id for m in self.mailboxes]
        if len(set(ids)) != len(ids):
            raise ValueError("mailbox ids must be unique")
        return self

    def mailbox(self, mailbox_id: str) -> SieveMailbox | None:
        return next((m for m in self.mailboxes if m.id == mailbox_id), None)

    def check_with(self, contracts) -> list[tuple[tuple, str]]:
        """Each mailbox can log in (its own login, or a stack mailbox's), and redirects go only to the
        allowed recipient domains, the rule communications.mail.send keeps."""
        from spine_comms.contracts.stack import stack_mailbox_ids

        known = stack_mailbox_ids(contracts)
        problems = [(("mailboxes", i, "id"), f"mailbox {box.id}: no login here, and the stack contract has no "
                     f"mailbox {box.id} (it has: {', '.join(known or []) or 'none'})")
                    for i, box in enumerate(self.mailboxes)
                    if known is not None and not box.login and box.id not in known]  # fmt: skip
        redirects = [(("mailboxes", b, "rules", r, "actions", a, "redirect"), action.address)
                     for b, box in enumerate(self.mailboxes) for r, rule in enumerate(box.rules)
                     for a, action in enumerate(rule.actions) if action.kind == "redirect"]  # fmt: skip
        allowed = allowed_recipient_domains(contracts) if redirects else []
        for key, address in redirects:
            if not allowed:
                problems.append((key, f"redirect to {address}: no allowed recipient domains (set "
                                      "pilot.send_test.allowed_recipient_domains in the stack contract)"))  # fmt: skip
            elif address.rpartition("@")[2].lower() not in allowed:
                problems.append((key, f"redirect to {address}: outside the allowed recipient domains "
                                      f"({', '.join(allowed)})"))  # fmt: skip
        return problems


def _or_shorthand(schema: dict, shorthand: dict) -> None:
    """The JSON Schema accepts the written shorthand ({address: From, is: x}) as well as the full form."""
    full = dict(schema)
    schema.clear()
    schema.update({"description": full.pop("description", ""), "anyOf": [shorthand, full]})


_ONE_OR_MANY = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
CONDITION_SHORTHAND = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{k: {**_ONE_OR_MANY, "description": f"The {k} name(s) tested."} for k in SUBJECTS},
        **{k: {**_ONE_OR_MANY, "description": f"The value(s) the {k} comparison uses."} for k in MATCH_TYPES},
        "part": {"enum": ["all", "localpart", "domain"], "description": "For address and envelope: which part."},
        "not": {"type": "boolean", "description": "True: the condition holds when the test does not match."},
    },
    "oneOf": [{"required": [k]} for k in SUBJECTS],
}
CONDITION_KEYS = [*SUBJECTS, *MATCH_TYPES, "part", "not"]
ACTION_SHORTHAND = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "fileinto": {"type": "string", "description": "File into this folder."},
        "create": {"type": "boolean", "description": "fileinto: create the folder when missing (RFC 5490)."},
        "specialuse": {"type": "string", "description": "fileinto: the special-use flag (RFC 8579), e.g. \\Junk."},
        "addflag": {**_ONE_OR_MANY, "description": "Add these IMAP flags."},
        "setflag": {**_ONE_OR_MANY, "description": "Set these IMAP flags."},
        "redirect": {"type": "string", "description": "Redirect to this address (within the allowed domains)."},
        **{k: {"const": True, "description": f"`{k}: true`."} for k in ("keep", "discard", "stop")},
    },
    "oneOf": [{"required": [k]} for k in ACTIONS],
}


def allowed_recipient_domains(contracts) -> list[str]:
    """The domains mail may go to: the stack contract's pilot.send_test list, else the outbox contract's."""
    from spine_comms.contracts.outbox import OUTBOX_CONTRACT, OutboxContract
    from spine_comms.contracts.stack import STACK_CONTRACT, StackContract

    allowed: list[str] = []
    if contracts.exists(STACK_CONTRACT):
        stack = contracts.load(STACK_CONTRACT, StackContract)
        allowed = stack.pilot.send_test.allowed_recipient_domains if stack.pilot.send_test else []
    if not allowed and contracts.exists(OUTBOX_CONTRACT):
        allowed = contracts.load(OUTBOX_CONTRACT, OutboxContract).allowed_recipient_domains
    return [d.lower().lstrip("@") for d in allowed]
