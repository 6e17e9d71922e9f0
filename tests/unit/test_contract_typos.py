"""A typo is an error, not a silent default: every contract kind refuses unknown keys at every level.

Each case writes one contract with a misspelt key and expects exactly that key refused, on its own
line, with the closest known key suggested. The spine's own stack contract keeps its known keys (listed
by name) and refuses anything else the same way. The shipped JSON Schemas say the same.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from spine_comms.contracts.catalog import contract_models
from spine_comms.core.contracts import Contracts
from spine_comms.core.errors import ContractError
from spine_comms.core.root import Root
from tests.unit.conftest import FIXTURES

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import contract_schemas  # noqa: E402

STACK = "communications.stack.contract.yaml"
GOOD = {
    "communications.inbox.contract.yaml": """\
version: 1
mailboxes:
  - id: ops
    folders: [INBOX]
    after_enqueue:
      action: seen
    imap:
      timeout_seconds: 20
policy:
  dmarc_fail: drop
  senders:
    allow: ["@spine.ronny.works"]
mailroom:
  via: filesystem
""",
    "communications.sieve.contract.yaml": """\
version: 1
mailboxes:
  - id: ops
    managesieve:
      timeout_seconds: 10
    rules:
      - name: alerts
        anyof:
          - {address: From, is: alerts@spine.ronny.works}
        actions:
          - fileinto: Alerts
            create: true
          - stop: true
""",
    "communications.outbox.contract.yaml": """\
version: 1
submission:
  form: SMTPS
retry:
  max_attempts: 3
limits:
  max_recipients: 10
""",
    "communications.mailauth.contract.yaml": """\
version: 1
domains:
  - domain: spine.ronny.works
    dmarc:
      min_policy: quarantine
    spf:
      required: true
probe:
  sender: ops
  target:
    mailbox: ops
""",
    "communications.dav.contract.yaml": """\
version: 1
accounts:
  - id: main
    base_url: https://dav.example.org
calendars:
  - id: spine-ops
sync:
  target_calendar: spine-ops
  limits:
    max_create: 5
""",
    "verify.gates.yaml": """\
version: 1
gates:
  - id: D901
    name: stack-up
    description: the stack answers
    severity: high
    checks: the ports answer
    fix_hint: start it
    run:
      capability: communications.stack.status
      timeout_seconds: 10
packs:
  core:
    gates: [D901]
""",
    "loop.evidence.contract.yaml": """\
version: 1
loops:
  LOOP-X:
    max_age_hours: 24
    steps:
      "1.1":
        - capability: mail.auth.probe
          max_age_hours: 12
""",
}

# (contract, the line whose key is misspelt, the typo, the key: the one written there and suggested back)
TYPOS = [
    ("communications.inbox.contract.yaml", "policy:", "polciy", "policy"),
    ("communications.inbox.contract.yaml", "  dmarc_fail: drop", "dmarc_fial", "dmarc_fail"),
    ("communications.inbox.contract.yaml", "    after_enqueue:", "after_enqeue", "after_enqueue"),
    ("communications.inbox.contract.yaml", "      timeout_seconds: 20", "timout_seconds", "timeout_seconds"),
    ("communications.inbox.contract.yaml", '    allow: ["@spine.ronny.works"]', "alow", "allow"),
    ("communications.inbox.contract.yaml", "mailroom:", "mailrom", "mailroom"),
    ("communications.sieve.contract.yaml", "    managesieve:", "managesieev", "managesieve"),
    ("communications.sieve.contract.yaml", "      timeout_seconds: 10", "timeout_second", "timeout_seconds"),
    ("communications.sieve.contract.yaml", "            create: true", "creat", "create"),
    ("communications.outbox.contract.yaml", "  max_attempts: 3", "max_atempts", "max_attempts"),
    ("communications.outbox.contract.yaml", "limits:", "limit", "limits"),
    ("communications.mailauth.contract.yaml", "      min_policy: quarantine", "min_polcy", "min_policy"),
    ("communications.mailauth.contract.yaml", "    mailbox: ops", "mailbx", "mailbox"),
    ("communications.dav.contract.yaml", "    max_create: 5", "max_creat", "max_create"),
    ("communications.dav.contract.yaml", "    base_url: https://dav.example.org", "base_ur", "base_url"),
    ("verify.gates.yaml", "      timeout_seconds: 10", "timeout", "timeout_seconds"),
    ("verify.gates.yaml", "    fix_hint: start it", "fixhint", "fix_hint"),
    ("loop.evidence.contract.yaml", "          max_age_hours: 12", "max_age_hour", "max_age_hours"),
    ("loop.evidence.contract.yaml", "    max_age_hours: 24", "max_agehours", "max_age_hours"),
    # The spine's own stack contract: its known keys are listed, anything else is refused.
    (STACK, "  stage: ws1-live-pilot", "stgae", "stage"),
    (STACK, '    lan_ip: "192.168.1.26"', "lan_iq", "lan_ip"),
    (STACK, "      protocol: SMTPS", "protocl", "protocol"),
    (STACK, "    manual_approval_required: true", "manual_aproval_required", "manual_approval_required"),
    (STACK, "transactional:", "transactionl", "transactional"),
]


def _root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    (base / "bindings").mkdir(parents=True)
    shutil.copy(FIXTURES / "spine" / STACK, base / "bindings")
    return base


def _write(root: Path, name: str, text: str) -> Path:
    path = root / "bindings" / name
    path.write_text(text)
    return path


def _load(root: Path, name: str):
    return Contracts(Root(root, "project")).load(name, contract_models()[name])


@pytest.mark.parametrize("name", sorted(GOOD))
def test_every_good_contract_loads(tmp_path, name):
    root = _root(tmp_path)
    _write(root, name, GOOD[name])
    assert _load(root, name) is not None


@pytest.mark.parametrize(("name", "line", "typo", "key"), TYPOS, ids=[t[2] for t in TYPOS])
def test_a_typo_is_refused_on_its_line_with_the_key_it_meant(tmp_path, name, line, typo, key):
    root = _root(tmp_path)
    text = GOOD[name] if name in GOOD else (root / "bindings" / name).read_text()
    lines = text.splitlines()
    index = lines.index(line)
    assert lines[index].lstrip().startswith(f"{key}:") or lines[index].lstrip().startswith(f"- {key}:")
    lines[index] = lines[index].replace(f"{key}:", f"{typo}:", 1)
    path = _write(root, name, "\n".join(lines) + "\n")
    with pytest.raises(ContractError) as caught:
        _load(root, name)
    problems = [str(p) for p in caught.value.problems]
    expected = f"unknown key {typo!r} (did you mean {key!r}?)"
    assert [p for p in problems if expected in p], problems
    where = next(p for p in problems if expected in p)
    assert where.startswith(f"{path}:{index + 1}: ")


def test_a_key_nothing_resembles_lists_what_is_allowed_there(tmp_path):
    root = _root(tmp_path)
    _write(root, "communications.outbox.contract.yaml", "version: 1\nretry:\n  zzz: 1\n")
    with pytest.raises(ContractError) as caught:
        _load(root, "communications.outbox.contract.yaml")
    assert re.search(r":3: retry\.zzz: unknown key 'zzz' \(known here: backoff_seconds, max_attempts, "
                     r"time_to_live_seconds\)", str(caught.value.problems[0]))  # fmt: skip


def test_the_cli_exits_2_and_names_file_line_and_suggestion(cli, tmp_path):
    root = _root(tmp_path)
    text = GOOD["communications.inbox.contract.yaml"].replace("dmarc_fail: drop", "dmarc_fial: drop")
    path = _write(root, "communications.inbox.contract.yaml", text)
    done = cli("communications.inbox.poll", "--root", str(root), "--json")
    assert done.exit_code == 2 and "Traceback" not in done.stdout + done.stderr
    problems = done.json()["error"]["problems"]
    assert f"{path}:10: policy.dmarc_fial: unknown key 'dmarc_fial' (did you mean 'dmarc_fail'?)" in problems


def test_the_stack_endpoints_refuse_typos_too(tmp_path):
    root = _root(tmp_path)
    stack = root / "bindings" / STACK
    stack.write_text(stack.read_text() + "endpoints:\n  ca_flie: ca.pem\n  timout_seconds: 3\n")
    with pytest.raises(ContractError) as caught:
        _load(root, STACK)
    shown = [str(p) for p in caught.value.problems]
    count = len(stack.read_text().splitlines())
    assert f"{stack}:{count - 1}: endpoints.ca_flie: unknown key 'ca_flie' (did you mean 'ca_file'?)" in shown
    assert f"{stack}:{count}: endpoints.timout_seconds: unknown key 'timout_seconds' (did you mean " \
           "'timeout_seconds'?)" in shown  # fmt: skip


# Files a contract names, secret references, mailbox lookups --------------------------------------------------


def test_a_missing_ca_file_is_exit_2_with_file_and_line(cli, tmp_path):
    root = _root(tmp_path)
    stack = root / "bindings" / STACK
    stack.write_text(stack.read_text() + "endpoints:\n  host: 127.0.0.1\n  ca_file: /nonexistent/ca.pem\n")
    line = len(stack.read_text().splitlines())
    done = cli("communications.stack.status", "--root", str(root), "--json")
    assert done.exit_code == 2, done.stdout + done.stderr
    assert done.json()["error"]["problems"] == [f"{stack}:{line}: endpoints.ca_file: /nonexistent/ca.pem: no such file"]


def test_a_ca_file_that_is_not_pem_and_a_relative_one_resolved_against_the_root(tmp_path):
    root = _root(tmp_path)
    (root / "junk.pem").write_text("not a certificate\n")
    stack = root / "bindings" / STACK
    base = stack.read_text()
    stack.write_text(base + "endpoints:\n  ca_file: junk.pem\n")
    with pytest.raises(ContractError) as caught:
        _load(root, STACK)
    assert "junk.pem: not a PEM file of CA certificates" in str(caught.value.problems[0])
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", root / "ca.pem")
    stack.write_text(base + "endpoints:\n  ca_file: ca.pem\n")
    assert _load(root, STACK).endpoints.ca_file == str(root / "ca.pem")  # every reader gets the same file


def test_a_malformed_secret_reference_is_refused_at_load(tmp_path):
    root = _root(tmp_path)
    text = GOOD["communications.inbox.contract.yaml"].replace(
        "  - id: ops\n", "  - id: ops\n    password_ref: vault:x\n"
    )
    path = _write(root, "communications.inbox.contract.yaml", text)
    with pytest.raises(ContractError) as caught:
        _load(root, "communications.inbox.contract.yaml")
    assert str(caught.value.problems[0]).startswith(f"{path}:4: mailboxes[0].password_ref: unknown secret reference")


def test_an_unresolvable_secret_names_the_contract_line_that_holds_it(cli, tmp_path):
    root = _root(tmp_path)
    text = GOOD["communications.sieve.contract.yaml"].replace(
        "  - id: ops\n", "  - id: ops\n    password_ref: env:H2_SURELY_UNSET_PASSWORD\n"
    )
    path = _write(root, "communications.sieve.contract.yaml", text)
    done = cli("sieve.status", "--root", str(root), "--json")
    assert done.exit_code == 2, done.stdout + done.stderr
    shown = "\n".join(done.json()["error"]["problems"])
    assert f"{path}:4: mailboxes[0].password_ref:" in shown and "H2_SURELY_UNSET_PASSWORD is not set" in shown


def test_a_mailbox_the_stack_does_not_know_is_refused_at_load_with_its_line(tmp_path):
    root = _root(tmp_path)
    text = GOOD["communications.inbox.contract.yaml"].replace("  - id: ops\n", "  - id: ops\n  - id: nobody\n")
    path = _write(root, "communications.inbox.contract.yaml", text)
    with pytest.raises(ContractError) as caught:
        _load(root, "communications.inbox.contract.yaml")
    assert str(caught.value.problems[0]).startswith(f"{path}:4: mailboxes[1].id: mailbox nobody: no address here")
    sieve = GOOD["communications.sieve.contract.yaml"].replace("  - id: ops\n", "  - id: ghost\n")
    path = _write(root, "communications.sieve.contract.yaml", sieve)
    with pytest.raises(ContractError) as caught:
        _load(root, "communications.sieve.contract.yaml")
    assert str(caught.value.problems[0]).startswith(f"{path}:3: mailboxes[0].id: mailbox ghost: no login here")


# Sieve redirects: checked as communications.mail.send checks recipients -------------------------------------

REDIRECT = GOOD["communications.sieve.contract.yaml"].replace("          - stop: true\n", "          - redirect: TO\n")


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("boss@evil.example", "outside the allowed recipient domains (spine.ronny.works, mintprints.com"),
        ("'Boss <boss@spine.ronny.works>'", "is not a plain address"),
        ("'a@spine.ronny.works, b@evil.example'", "is not a plain address"),
        ("'boss@spine.ronny.works\\r\\nBcc: x@evil.example'", "is not a plain address"),
        ("nobody", "is not a plain address"),
        ("boss@SPINE.RONNY.WORKS.evil.example", "outside the allowed recipient domains"),
    ],
)
def test_a_sieve_redirect_outside_the_allowed_domains_or_not_an_address_is_exit_2(cli, tmp_path, to, message):
    root = _root(tmp_path)
    path = _write(root, "communications.sieve.contract.yaml", REDIRECT.replace("TO", to))
    line = REDIRECT.splitlines().index("          - redirect: TO") + 1
    done = cli("sieve.status", "--root", str(root), "--json")
    assert done.exit_code == 2, done.stdout + done.stderr
    shown = done.json()["error"]["problems"]
    assert any(p.startswith(f"{path}:{line}: mailboxes[0].rules[0].actions[1]") and message in p for p in shown), shown


def test_a_redirect_within_the_allowed_domains_loads_and_none_allowed_refuses_it(tmp_path):
    root = _root(tmp_path)
    _write(root, "communications.sieve.contract.yaml", REDIRECT.replace("TO", "Boss@Spine.Ronny.Works"))
    assert _load(root, "communications.sieve.contract.yaml").mailboxes[0].rules[0].actions[1].kind == "redirect"
    stack = root / "bindings" / STACK
    data = stack.read_text()
    start = data.index("    allowed_recipient_domains:")
    end = data.index("  mailboxes:", start)
    stack.write_text(data[:start] + data[end:])
    with pytest.raises(ContractError) as caught:
        _load(root, "communications.sieve.contract.yaml")
    assert "no allowed recipient domains" in str(caught.value.problems[0])


# The spine's own files: read as yq and PyYAML read them -------------------------------------------------------


def test_a_duplicate_key_in_the_spines_stack_contract_warns_with_both_lines_and_the_last_wins(cli, tmp_path):
    root = _root(tmp_path)
    stack = root / "bindings" / STACK
    text = stack.read_text().replace('owner: "@ronny"\n', 'owner: "@ronny"\nowner: "@someone-else"\n', 1)
    stack.write_text(text)
    first = text.splitlines().index('owner: "@ronny"') + 1
    contracts = Contracts(Root(root, "project"))
    assert contracts.load(STACK, contract_models()[STACK]).owner == "@someone-else"
    assert contracts.warnings == [f"{stack}:{first + 1}: owner: duplicate key at lines {first} and {first + 1}; "
                                  "the last wins, as yq and PyYAML read it"]  # fmt: skip
    done = cli("communications.stack.status", "--root", str(root), "--json", "--host", "127.0.0.1", "--timeout",
               "0.2", "--only", "993")  # fmt: skip
    assert "duplicate key at lines" in done.stderr and done.exit_code != 2


def test_a_duplicate_key_in_a_contract_this_project_owns_is_still_an_error(tmp_path):
    root = _root(tmp_path)
    text = GOOD["communications.outbox.contract.yaml"] + "limits:\n  max_recipients: 5\n"
    path = _write(root, "communications.outbox.contract.yaml", text)
    with pytest.raises(ContractError) as caught:
        _load(root, "communications.outbox.contract.yaml")
    assert str(caught.value.problems[0]) == f"{path}:8: limits: duplicate key (first at line 6)"


# The shipped JSON Schemas say the same ---------------------------------------------------------------------


def _objects(node, where="#"):
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield where, node
        for key, value in node.items():
            yield from _objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects(value, f"{where}/{index}")


@pytest.mark.parametrize("contract", sorted(contract_schemas.MODELS))
def test_every_schema_refuses_unknown_keys_and_describes_every_field(contract):
    schema = json.loads(contract_schemas.schema_path(contract).read_text())
    defs = schema.get("$defs", {})
    for where, node in _objects(schema):
        if "properties" not in node:
            continue  # a free-form mapping (expect_data: dotted path -> value)
        assert node.get("additionalProperties") is False, where
        for name, prop in node["properties"].items():
            ref = prop.get("$ref") or next((a["$ref"] for a in prop.get("anyOf", []) if "$ref" in a), None)
            described = "description" in prop or (ref and "description" in defs[ref.rsplit("/", 1)[-1]])
            assert described, f"{contract} {where}/{name} has no description"


SCHEMA_TYPOS = [t for t in TYPOS if t[0] in contract_schemas.MODELS]


@pytest.mark.parametrize(("name", "line", "typo", "key"), SCHEMA_TYPOS, ids=[t[2] for t in SCHEMA_TYPOS])
def test_the_schema_flags_the_same_typo(name, line, typo, key):
    schema = json.loads(contract_schemas.schema_path(name).read_text())
    good = yaml.safe_load(GOOD[name])
    jsonschema.validate(good, schema)
    bad = yaml.safe_load(GOOD[name].replace(line, line.replace(f"{key}:", f"{typo}:", 1)))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# D911 (contracts_valid) ----------------------------------------------------------------------------------


def _d911(root: Path):
    from spine_comms.contracts.verify import Gate
    from spine_comms.core.root import find_root
    from spine_comms.verify.builtin import contracts_valid

    gate = Gate(id="D911", name="comms-contracts-valid", description="d", severity="high", checks="c",
                fix_hint="f", builtin="contracts_valid")  # fmt: skip
    return contracts_valid(gate, find_root(root))


def test_d911_passes_the_spines_files_as_its_tools_read_them_and_fails_a_typo_in_ours(tmp_path):
    from tests.spine_checkout import build_spine_with_duplicates

    spine = build_spine_with_duplicates(tmp_path / "spine")
    bindings = spine / "ops" / "bindings"
    shutil.copy(FIXTURES / "spine" / STACK, bindings)
    inbox = bindings / "communications.inbox.contract.yaml"
    inbox.write_text(GOOD["communications.inbox.contract.yaml"])
    result = _d911(spine)
    assert result.status == "PASS", result.detail
    warnings = result.evidence["warnings"]
    assert any("cli.tools.inventory.yaml:4: tools[0].description: duplicate key at lines 3 and 4" in w
               for w in warnings), warnings  # fmt: skip
    assert any("wave.lock.yaml" in w and "2 YAML documents" in w for w in warnings), warnings
    assert "3 warning(s) in the spine's files" in result.detail

    inbox.write_text(GOOD["communications.inbox.contract.yaml"].replace("  dmarc_fail: drop", "  dmarc_fial: drop"))
    result = _d911(spine)
    assert result.status == "FAIL"
    assert f"{inbox}:10: policy.dmarc_fial: unknown key 'dmarc_fial' (did you mean 'dmarc_fail'?)" in result.detail

    stack = bindings / STACK
    inbox.write_text(GOOD["communications.inbox.contract.yaml"])
    stack.write_text(stack.read_text() + "endpoints:\n  ca_file: /nonexistent/ca.pem\n")
    result = _d911(spine)
    assert result.status == "FAIL" and "endpoints.ca_file: /nonexistent/ca.pem: no such file" in result.detail


def test_the_spines_runtime_contract_with_a_repeated_key_is_read_as_yq_reads_it(tmp_path):
    from spine_comms.core.root import mailroom_paths

    root = _root(tmp_path)
    runtime = tmp_path / "runtime"
    (root / "bindings" / "mailroom.runtime.contract.yaml").write_text(
        f"runtime_root: /nowhere\nactive: false\nruntime_root: {runtime}\nactive: true\n"
    )
    paths = mailroom_paths(Root(root, "project"), env={})
    assert paths.source == "runtime-contract" and paths.inbox == runtime / "inbox"


@pytest.mark.parametrize(
    ("line", "typo", "key"),
    [('  default: "America/New_York"', "defualt", "default"), ('      authority: "spine"', "authorty", "authority"),
     ('          byminute: 0', "byminut", "byminute")],
)  # fmt: skip
def test_the_spines_calendar_layers_refuse_typos_and_keep_the_spines_own_keys(tmp_path, line, typo, key):
    root = _root(tmp_path)
    text = (FIXTURES / "spine" / "calendar.global.yaml").read_text()
    _write(root, "calendar.global.yaml", text)
    assert _load(root, "calendar.global.yaml").feeds is not None  # the spine's generator's keys are kept
    lines = text.splitlines()
    index = lines.index(line)
    lines[index] = lines[index].replace(f"{key}:", f"{typo}:", 1)
    path = _write(root, "calendar.global.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ContractError) as caught:
        _load(root, "calendar.global.yaml")
    expected = f"{path}:{index + 1}: "
    assert any(str(p).startswith(expected) and f"(did you mean {key!r}?)" in str(p) for p in caught.value.problems)
