"""`spine-comms init DIR`: a ready root for the operator's own server, from the contracts the loop runs on.

The starter contracts (`spine_comms/bootstrap/bindings/`, the checkout's top-level `bindings/`) describe
the loop's own deployment, Stalwart at mail.spine.mintprints.co. `init` copies them with the operator's
domain, mail host and mailboxes in their place, adds a .gitignore for receipts, mailroom and secrets
and a README of next steps, and refuses to write over anything that exists. With `--from-stalwart URL`
it asks the management API for what it can tell (the domain on the server, its DKIM selectors).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from spine_comms.core.errors import ExitCode

STARTER = Path(__file__).resolve().parent / "bindings"
STARTER_DOMAIN = "spine.mintprints.co"
STARTER_HOST = "mail.spine.mintprints.co"
STARTER_MAILBOXES = ("ops", "alerts", "noreply")
MAILBOX_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

GITIGNORE = """\
# Written by `spine-comms init`: run output and secrets stay out of version control.
/receipts/
/mailroom/
/secrets/
"""


@dataclass
class Plan:
    root: Path
    domain: str
    mail_host: str
    mailboxes: list[str]
    selectors: list[str] = field(default_factory=lambda: ["stalwart"])
    notes: list[str] = field(default_factory=list)

    def files(self) -> dict[str, str]:
        """Relative path -> text, everything init writes."""
        out = {f"bindings/{path.name}": self._fill(path.name, path.read_text()) for path in sorted(STARTER.iterdir())
               if path.suffix == ".yaml"}  # fmt: skip
        out[".gitignore"] = GITIGNORE
        out["README.md"] = self._readme()
        return out

    def _fill(self, name: str, text: str) -> str:
        # The host first: it contains the domain.
        text = text.replace(STARTER_HOST, self.mail_host).replace(STARTER_DOMAIN, self.domain)
        text = re.sub(r'\n    lan_ip: "[^"]*".*', "", text)  # the loop's own LAN address means nothing here
        text = text.replace("dkim_selectors: [stalwart]", f"dkim_selectors: [{', '.join(self.selectors)}]")
        primary = self.mailboxes[0]
        if name == "communications.stack.contract.yaml":
            return _stack_mailboxes(text, self.mailboxes, self.domain)
        text = re.sub(r"\bops@", f"{primary}@", text)
        text = re.sub(r"(\bid: |\bsender: |\bmailbox: )ops\b", rf"\g<1>{primary}", text)
        if name == "communications.inbox.contract.yaml" and "alerts" not in self.mailboxes:
            text = re.sub(r"\n  - id: alerts\n    folders: \[INBOX\]", "", text)
        if name == "communications.sieve.contract.yaml" and "alerts" not in self.mailboxes:
            text = text.replace(f"          - {{address: From, is: alerts@{self.domain}}}\n", "")
        return text

    def _readme(self) -> str:
        variables = " ".join(f"STALWART_{m.upper().replace('-', '_')}_PASSWORD" for m in self.mailboxes)
        return f"""# spine-comms root for {self.domain}

Written by `spine-comms init`. The contracts in `bindings/` describe Stalwart at {self.mail_host};
every value is commented. Secrets are references (`env:NAME`), never values.

Next:

1. Give the passwords: `export {variables} STALWART_ADMIN_SECRET` (or change the
   `password_ref`/`secret_ref` entries to `file:` or `cmd:` references).
2. Check the contracts: `spine-comms contracts.check --root {self.root}`
3. Ask the server: `spine-comms communications.stack.status --root {self.root}`, then
   `spine-comms verify.pack.run communications --root {self.root}` for every gate at once.

Receipts go to `receipts/sessions/`, the mailroom to `mailroom/` (both ignored by git).
"""


def _stack_mailboxes(text: str, mailboxes: list[str], domain: str) -> str:
    """The stack contract's mailbox list, one entry per --mailbox (the starter's roles where they match)."""
    roles = {"ops": "operations", "alerts": "alerting", "noreply": "system"}
    head, marker, rest = text.partition("  mailboxes:\n")
    tail = rest[rest.index("\n# Where spine-comms connects") :]
    entries = []
    for box in mailboxes:
        variable = f"STALWART_{box.upper().replace('-', '_')}_PASSWORD"
        entries.append(
            f"    - id: {box}\n      address: {box}@{domain}\n      role: {roles.get(box, 'agent')}\n"
            f"      status: active\n      routing_mode: stalwart-direct\n      login: {box}@{domain}\n"
            f"      password_ref: env:{variable}\n"
        )
    text = head + marker + "".join(entries) + tail
    return text.replace(f"default_sender: ops@{domain}", f"default_sender: {mailboxes[0]}@{domain}").replace(
        f"default_recipient: ops@{domain}", f"default_recipient: {mailboxes[0]}@{domain}"
    )


def _ask_stalwart(plan: Plan, url: str, username: str | None, timeout: float) -> None:
    """Fill what the management API knows; a server that cannot be asked leaves the starter's values."""
    from spine_comms.protocols.stalwart import StalwartError, connect

    secret = os.environ.get("STALWART_ADMIN_SECRET")
    if not secret:
        plan.notes.append("--from-stalwart: $STALWART_ADMIN_SECRET is not set; the starter's values are kept")
        return
    try:
        with connect(url, username=username, secret=secret, timeout=timeout) as admin:
            domains = admin.domains()
            if plan.domain not in domains:
                plan.notes.append(f"Stalwart at {url} does not host {plan.domain} (it has {', '.join(domains)})")
                return
            selectors = sorted({k.selector for k in admin.dkim_keys(plan.domain) if k.stage == "active"})
    except StalwartError as exc:
        plan.notes.append(f"--from-stalwart: {exc.message}; the starter's values are kept")
        return
    if selectors:
        plan.selectors = selectors
        plan.notes.append(f"DKIM selectors from Stalwart: {', '.join(selectors)}")


def init_command(
    directory: Annotated[Path, typer.Argument(help="The new root (created; it must be empty if it exists).")],
    domain: Annotated[str, typer.Option("--domain", help="The mail domain (example.org).")],
    mail_host: Annotated[str, typer.Option("--mail-host", help="Stalwart's host name (mail.example.org).")],
    mailbox: Annotated[
        list[str] | None,
        typer.Option(
            "--mailbox", help="A stack mailbox id; repeatable; the first is the primary. Default: ops, alerts, noreply."
        ),
    ] = None,
    from_stalwart: Annotated[
        str | None,
        typer.Option(
            "--from-stalwart",
            metavar="URL",
            help="Ask this management API for the domain's DKIM "
            "selectors ($STALWART_ADMIN_SECRET; --username for Basic).",
        ),
    ] = None,
    username: Annotated[str | None, typer.Option("--username", help="Login for --from-stalwart.")] = None,
    json_flag: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Write a ready root for your own server: the contracts (filled in, every value commented), a
    .gitignore for receipts, mailroom and secrets, and a README of next steps. Never writes over a file."""
    problems = _problems(domain.rstrip(".").lower(), mail_host.rstrip(".").lower(), mailbox)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        problems.append(f"{directory}: exists and is not an empty directory (init never writes over anything)")
    if problems:
        _finish(json_flag, "error", {"problems": problems}, problems, ExitCode.USAGE)
    plan = Plan(directory.resolve(), domain.rstrip(".").lower(), mail_host.rstrip(".").lower(),
                list(dict.fromkeys(mailbox or STARTER_MAILBOXES)))  # fmt: skip
    if from_stalwart:
        _ask_stalwart(plan, from_stalwart, username, 10.0)
    written = []
    for relative, text in plan.files().items():
        path = plan.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as out:  # "x": never over an existing file
            out.write(text)
        written.append(str(path))
    commands = [
        f"spine-comms contracts.check --root {plan.root}",
        f"spine-comms communications.stack.status --root {plan.root}",
        f"spine-comms verify.pack.run communications --root {plan.root}",
    ]
    lines = [f"wrote {len(written)} file(s) under {plan.root}", *plan.notes, "next:", *(f"  {c}" for c in commands)]
    data = {"root": str(plan.root), "domain": plan.domain, "mail_host": plan.mail_host, "mailboxes": plan.mailboxes,
            "dkim_selectors": plan.selectors, "files": written, "notes": plan.notes, "next": commands}  # fmt: skip
    _finish(json_flag, "ok", data, lines, ExitCode.OK)


def _problems(domain: str, mail_host: str, mailboxes: list[str] | None) -> list[str]:
    from spine_comms.contracts.mailauth import HOSTNAME  # pydantic only when init runs: --help stays fast

    out = []
    for option, value in (("--domain", domain), ("--mail-host", mail_host)):
        if "." not in value or not re.match(HOSTNAME, value):
            out.append(f"{option} {value!r}: not a DNS name")
    for box in mailboxes or []:
        if not MAILBOX_ID.match(box):
            out.append(f"--mailbox {box!r}: lower-case letters, digits, '-' and '_'")
    return out


def _finish(json_flag: bool, status: str, data: dict, lines: list[str], code: ExitCode) -> None:
    if json_flag:
        # The envelope every command prints (no run key: init writes a root, not a receipt).
        generated = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(json.dumps({"capability": "init", "schema_version": "1.0", "status": status, "generated_at": generated,
                          "data": data, "run_key": None, "receipt": None}, indent=2))  # fmt: skip
    else:
        stream = sys.stdout if code == ExitCode.OK else sys.stderr
        for line in [*lines, f"status: {status}"]:
            print(line, file=stream)
    raise typer.Exit(int(code))
