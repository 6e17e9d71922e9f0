"""The ready-to-use spine-comms root at <lab>/root.

`spine-comms --root <lab>/root communications.stack.status` needs nothing
else: the stack contract keeps the shape of the spine's real file, with lab
values, plus the `endpoints` section that says where and how to connect.
Passwords are referenced as files under <lab>/secrets, mode 0600.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

from lab.layout import AUTHSERV_ID, DAV_USERS, DKIM_SELECTOR, DOMAIN, MAIL_HOST, Lab

ROLES = {"ops": "operations", "alerts": "alerting", "noreply": "system"}

# (port name, contract protocol, description); the protocol vocabulary is the package's.
PORTS = [
    ("smtp", "SMTP", "Inbound SMTP (Postfix MX)"),
    ("submissions", "SMTPS", "Implicit TLS submission (Postfix)"),
    ("submission", "STARTTLS", "STARTTLS submission (Postfix)"),
    ("imaps", "IMAPS", "IMAP over TLS (Dovecot)"),
    ("imap", "IMAP", "IMAP with STARTTLS"),
    ("sieve", "ManageSieve", "Sieve filter management (Dovecot Pigeonhole)"),
    ("radicale_tls", "HTTPS", "Radicale CalDAV/CardDAV over TLS"),
    ("radicale", "HTTP", "Radicale CalDAV/CardDAV (plain)"),
]


def _q(value: object) -> str:
    """A YAML scalar: JSON strings are valid YAML double-quoted strings."""
    return json.dumps(value)


def stack_contract(lab: Lab) -> str:
    today = dt.date.today().isoformat()
    lines = [
        "# Written by the spine-comms lab (`python -m lab start`): it points spine-comms",
        f"# at the loopback lab in {lab.dir} (port base {lab.base}). Written at every",
        "# start; edits are lost. Shape: the spine's communications.stack.contract.yaml,",
        "# plus `endpoints`.",
        "version: 1",
        f'updated_at: "{today}"',
        'owner: "@lab"',
        "scope: spine-comms-lab",
        "pilot:",
        "  stage: lab",
        "  provider: lab",
        "  vm_target:",
        "    hostname: lab",
        '    lan_ip: "127.0.0.1"',
        "  ports:",
    ]
    for name, protocol, description in PORTS:
        port = lab.port(name)
        lines += [
            f"    - container: {port}",
            f"      host: {port}",
            f"      protocol: {protocol}",
            f"      description: {_q(description)}",
        ]
    lines += [
        "  send_test:",
        "    mode: lab",
        "    manual_approval_required: false",
        f"    default_sender: ops@{DOMAIN}",
        f"    default_recipient: ops@{DOMAIN}",
        "    allowed_recipient_domains:",
        f"      - {DOMAIN}",
        "      - example.net",
        "  mailboxes:",
    ]
    for user in DAV_USERS:
        lines += [
            f"    - id: {user}",
            f"      address: {user}@{DOMAIN}",
            f"      role: {ROLES[user]}",
            "      status: active",
            "      routing_mode: stalwart-direct",
            f"      login: {user}@{DOMAIN}",
            f"      password_ref: {_q('file:' + str(lab.secrets / f'{user}.password'))}",
        ]
    lines += [
        "endpoints:",
        "  host: 127.0.0.1",
        f"  server_name: {MAIL_HOST}",
        f"  ca_file: {_q(str(lab.ca_file))}",
        "  timeout_seconds: 5",
        "  dns:",
        "    server: 127.0.0.1",
        f"    port: {lab.port('dns')}",
        "",
    ]
    return "\n".join(lines)


def mailauth_contract(lab: Lab) -> str:
    """Phase 1 expectations for the lab's zone, which the lab serves as a good domain should."""
    return "\n".join(
        [
            "# Written by the spine-comms lab: what phase 1 expects of spine.test.",
            "version: 1",
            "domains:",
            f"  - domain: {DOMAIN}",
            f"    mail_host: mx.{DOMAIN}",
            '    mail_host_addresses: ["127.0.0.1"]',
            f"    dkim_selectors: [{DKIM_SELECTOR}]",
            '    spf: {all: ["-all"]}',
            "    dmarc: {min_policy: none, rua_required: true}",
            "    mta_sts: required",
            "    tls_rpt: required",
            "dkim_keys:",
            f"  directory: {_q(str(lab.root / 'secrets' / 'dkim'))}",
            "# The lab's policy host listens on a lab port with a lab-CA certificate (senders: 443, public CAs).",
            "mta_sts_fetch:",
            f"  port: {lab.port('mta_sts')}",
            f"  ca_file: {_q(str(lab.ca_file))}",
            "probe:",
            "  sender: ops",
            "  target: {mailbox: ops}",
            "  submission: SMTPS",
            "  timeout_seconds: 30",
            f"  trusted_authserv_id: {AUTHSERV_ID}",
            "",
        ]
    )


def dav_contract(lab: Lab) -> str:
    """Radicale (HTTPS, with logins) is the main account; Xandikos (no authentication) the second."""
    secret = _q("file:" + str(lab.secrets / "ops.password"))
    return "\n".join(
        [
            "# Written by the spine-comms lab: calendars and contacts on Radicale and Xandikos.",
            "version: 1",
            "accounts:",
            "  - id: radicale",
            f"    base_url: https://127.0.0.1:{lab.port('radicale_tls')}/",
            f"    domain: {DOMAIN}",
            f"    login: ops@{DOMAIN}",
            f"    password_ref: {secret}",
            f"    server_name: {MAIL_HOST}",
            f"    ca_file: {_q(str(lab.ca_file))}",
            "  - id: xandikos",
            f"    base_url: http://127.0.0.1:{lab.port('xandikos')}/",
            "calendars:",
            "  - id: spine-ops",
            "    display_name: Spine Ops",
            '    color: "#1f6feb"',
            "    components: [VEVENT, VTODO]",
            "  - id: spine-ops",
            "    account: xandikos",
            "    display_name: Spine Ops",
            "addressbooks:",
            "  - id: spine-contacts",
            "    display_name: Spine Contacts",
            "sync:",
            "  source: calendar.global.yaml",
            "  target_calendar: spine-ops",
            "",
        ]
    )


def inbox_contract(lab: Lab) -> str:
    """ops@ and alerts@ polled over IMAPS (host, port and CA from the stack contract), items to <root>/mailroom."""
    return "\n".join(
        [
            "# Written by the spine-comms lab: the mailboxes spine-comms polls into the mailroom.",
            "version: 1",
            "mailboxes:",
            "  - id: ops",
            "    folders: [INBOX]",
            "    after_enqueue: {action: seen}",
            "  - id: alerts",
            "policy:",
            f"  trusted_authserv_id: {AUTHSERV_ID}",
            "  dmarc_fail: quarantine",
            "mailroom: {via: filesystem}",
            "",
        ]
    )


def sieve_contract(lab: Lab) -> str:
    """Routing at the server: alert mail to ops@ is flagged and filed into Alerts (applied by sieve.apply)."""
    return "\n".join(
        [
            "# Written by the spine-comms lab: Sieve routing rules, applied with sieve.apply.",
            "version: 1",
            "mailboxes:",
            "  - id: ops",
            "    script: spine-routing",
            "    rules:",
            "      - name: alerts",
            "        anyof:",
            f"          - {{address: From, is: alerts@{DOMAIN}}}",
            '          - {header: Subject, contains: "[ALERT]"}',
            "        actions:",
            '          - addflag: "\\\\Flagged"',
            "          - {fileinto: Alerts, create: true}",
            "          - stop: true",
            "",
        ]
    )


def runtime_contract(lab: Lab) -> str:
    return "\n".join(
        [
            "# Written by the spine-comms lab: inactive, so the mailroom is <root>/mailroom.",
            "version: 1",
            'owner: "@lab"',
            "scope: mailroom-runtime-externalization",
            f"tracked_contract_root: {_q(str(lab.root / 'mailroom'))}",
            f"runtime_root: {_q(str(lab.root / 'mailroom'))}",
            "active: false",
            "",
        ]
    )


def write_secrets(lab: Lab, passwords: dict[str, str]) -> None:
    lab.secrets.mkdir(mode=0o700, exist_ok=True)
    for user, password in passwords.items():
        path = lab.secrets / f"{user}.password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(password)  # no newline: readers take the file content as the secret


def outbox_contract(lab: Lab) -> str:
    """Mail out in the lab: retries a second apart so tests and the demo never wait long."""
    return "\n".join(
        [
            "# Written by the spine-comms lab: how communications.mail.send submits and retries.",
            "version: 1",
            "submission: {form: SMTPS, timeout_seconds: 20}",
            "retry: {backoff_seconds: [1], max_attempts: 5, time_to_live_seconds: 3600}",
            "bounce_notice: {enabled: true}",
            "unknown_outcome: {lookup_folders: [Sent]}",
            "",
        ]
    )


def write_loop_evidence(lab: Lab) -> None:
    """The loop the toolkit was built to close: its scope in the mailroom state (where loop.evidence finds a
    loop id) and the contract mapping its steps to receipts, both as spine-comms ships them."""
    import spine_comms

    shipped = Path(spine_comms.__file__).parent / "governance" / "loops"
    scopes = lab.root / "mailroom" / "state" / "loop-scopes"
    scopes.mkdir(parents=True, exist_ok=True)
    for scope in shipped.glob("LOOP-*.scope.md"):
        shutil.copyfile(scope, scopes / scope.name)
    shutil.copyfile(shipped / "loop.evidence.contract.yaml", lab.root / "bindings" / "loop.evidence.contract.yaml")


def write_root(lab: Lab) -> None:
    bindings = lab.root / "bindings"
    bindings.mkdir(parents=True, exist_ok=True)
    (bindings / "communications.stack.contract.yaml").write_text(stack_contract(lab))
    (bindings / "mailroom.runtime.contract.yaml").write_text(runtime_contract(lab))
    (bindings / "communications.mailauth.contract.yaml").write_text(mailauth_contract(lab))
    (bindings / "communications.dav.contract.yaml").write_text(dav_contract(lab))
    (bindings / "communications.inbox.contract.yaml").write_text(inbox_contract(lab))
    (bindings / "communications.sieve.contract.yaml").write_text(sieve_contract(lab))
    write_loop_evidence(lab)
    (bindings / "communications.outbox.contract.yaml").write_text(outbox_contract(lab))
    # The operator's calendar layers (the spine's sample), the source of calendar.sync.*.
    shutil.copyfile(Path(__file__).parent / "data" / "calendar.global.yaml", bindings / "calendar.global.yaml")
