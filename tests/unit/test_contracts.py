"""Contracts: the spine's real files load unchanged; every broken one gives exit 2 and file:line."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from spine_comms.contracts.stack import StackContract
from spine_comms.core.contracts import validate
from spine_comms.core.errors import ContractError
from spine_comms.core.yamlfile import load_yaml
from tests.unit.conftest import FIXTURES

REAL = FIXTURES / "spine/communications.stack.contract.yaml"
GOOD = """version: 1
pilot:
  stage: test
  ports:
    - host: 993
      protocol: IMAPS
  mailboxes:
    - id: ops
      address: ops@spine.test
"""


def test_the_spines_real_stack_contract_loads_unchanged_with_the_spines_own_keys_kept():
    doc = load_yaml(REAL)
    contract = validate(doc, StackContract)
    assert [m.id for m in contract.pilot.mailboxes] == ["ops", "alerts", "noreply"]
    assert contract.pilot.ports[5].host == 8443 and contract.pilot.ports[5].protocol.value == "HTTPS"
    assert contract.mail_archiver["database"]["db_name"] == "MailArchiver"
    assert contract.pilot.execution_backend == "microsoft" and contract.pilot.vm_target.vm_id == "214"
    assert contract.connect_host() == "192.168.1.26" and contract.server_name() == "mail.spine.ronny.works"


def test_line_numbers_are_kept():
    doc = load_yaml(REAL)
    assert doc.line_of(("pilot", "mailboxes", 1, "address")) == 69
    assert doc.line_of(("pilot", "ports", 5, "host")) == REAL.read_text().splitlines().index("      host: 8443") + 1


BROKEN = {
    "syntax": (GOOD.replace("  stage: test", "  stage: [test"), r":\d+: YAML syntax"),
    "wrong_type": (
        GOOD.replace("host: 993", "host: nine-nine-three"),
        r":5: pilot\.ports\[0\]\.host: Input should be a valid integer",
    ),
    "unknown_enum": (
        GOOD.replace("protocol: IMAPS", "protocol: POP7"),
        r":6: pilot\.ports\[0\]\.protocol: Input should be",
    ),
    "missing_key": ("version: 1\nscope: x\n", r":1: pilot: Field required"),
    "alias_bomb": (
        "a0: &a [x,x,x,x,x,x,x,x,x,x]\n"
        + "".join(f"{k}: &{k} [{','.join([f'*{p}'] * 10)}]\n" for p, k in zip("abcde", "bcdef", strict=True)),
        r"too many values after expanding aliases",
    ),
    "empty": ("", r":1: file is empty"),
    "only_comments": ("# nothing here\n\n", r":1: file is empty"),
    "top_level_list": ("- a\n- b\n", r":1: expected a mapping of keys at the top, found list"),
    "bad_email": (
        GOOD.replace("ops@spine.test", "not-an-address"),
        r":9: pilot\.mailboxes\[0\]\.address: String should match",
    ),
    "out_of_range_port": (
        GOOD.replace("host: 993", "host: 70000"),
        r":5: pilot\.ports\[0\]\.host: Input should be less than or equal to 65535",
    ),
}


def _assert_clean_exit_2(result, pattern: str) -> None:
    text = result.stdout + result.stderr
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    assert re.search(pattern, text), text
    error_lines = [ln for ln in result.stdout.splitlines() if ln.startswith("error: ")]
    assert error_lines and all("communications.stack.contract.yaml" in ln for ln in error_lines)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_contract_exits_2_with_file_and_line(cli, root, case):
    text, pattern = BROKEN[case]
    (root / "bindings/communications.stack.contract.yaml").write_text(text)
    _assert_clean_exit_2(cli("communications.stack.status", "--root", str(root)), pattern)


def test_several_problems_are_one_line_each(cli, root):
    text = GOOD.replace("host: 993", "host: abc").replace("protocol: IMAPS", "protocol: NOPE")
    (root / "bindings/communications.stack.contract.yaml").write_text(text)
    result = cli("communications.stack.status", "--root", str(root), "--json")
    assert result.exit_code == 2
    problems = result.json()["error"]["problems"]
    assert len(problems) == 2
    assert problems[0].endswith(
        ":5: pilot.ports[0].host: Input should be a valid integer, unable to parse string as an integer"
    )
    assert ":6: pilot.ports[0].protocol:" in problems[1]
    assert result.json()["status"] == "error"


def test_non_utf8_bytes(cli, root):
    (root / "bindings/communications.stack.contract.yaml").write_bytes(GOOD.encode() + b"note: caf\xe9\n")
    _assert_clean_exit_2(cli("communications.stack.status", "--root", str(root)), r":10: not UTF-8 \(byte 0xe9")


def test_a_directory_where_the_file_should_be(cli, root):
    path = root / "bindings/communications.stack.contract.yaml"
    path.unlink()
    path.mkdir()
    _assert_clean_exit_2(
        cli("communications.stack.status", "--root", str(root)), r"is a directory, expected a YAML file"
    )


def test_a_missing_contract(cli, root):
    (root / "bindings/communications.stack.contract.yaml").unlink()
    _assert_clean_exit_2(cli("communications.stack.status", "--root", str(root)), r"contract not found")


def test_an_unreadable_file(tmp_path):
    """Root reads everything, so the loader runs in a child that has dropped to `nobody`."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="spine-comms-unreadable-"))  # pytest's own tmp is 0700
    base.chmod(0o755)
    path = base / "secret.yaml"
    path.write_text(GOOD)
    path.chmod(0o000)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            if os.getuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            load_yaml(path)
            message = "loaded"
        except ContractError as exc:
            message = str(exc.problems[0])
        except BaseException as exc:  # pragma: no cover - reported to the parent
            message = f"unexpected {exc!r}"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    message = os.read(read, 4096).decode()
    os.close(read)
    shutil.rmtree(base)
    assert message == f"{path}: cannot read: Permission denied"


def test_the_spine_layout_is_found(cli, tmp_path):
    spine = tmp_path / "spine"
    (spine / "ops/bindings").mkdir(parents=True)
    shutil.copy(REAL, spine / "ops/bindings")
    (spine / "ops/bindings/communications.stack.contract.yaml").write_text(GOOD.replace("993", "1"))
    result = cli("communications.stack.status", "--root", str(spine), "--json", "--timeout", "1", "--host", "127.0.0.1")
    assert result.json()["data"]["contract"] == str(spine / "ops/bindings/communications.stack.contract.yaml")
    assert (spine / "receipts/sessions").is_dir()


def test_spine_root_env_is_used(cli, root):
    result = cli("communications.stack.status", "--json", "--timeout", "0.5", "--host", "127.0.0.1", "--only", "993",
                 env={"SPINE_ROOT": str(root)})  # fmt: skip
    assert result.json()["data"]["contract"] == str(root / "bindings/communications.stack.contract.yaml")


def test_the_mailauth_contract_names_each_bad_value_on_its_line(tmp_path):
    from spine_comms.contracts.mailauth import MailAuthContract

    path = tmp_path / "communications.mailauth.contract.yaml"
    path.write_text(
        "version: 1\n"
        "domains:\n"
        "  - domain: 'bad domain!'\n"
        "    dmarc: {min_policy: strict}\n"
        "  - domain: example.org\n"
        "    dkim_selectors: ['b@d']\n"
        "probe: {sender: ops, target: {mailbox: ops, address: x@example.org}}\n"
    )
    with pytest.raises(ContractError) as caught:
        validate(load_yaml(path), MailAuthContract)
    lines = {(p.line, p.field): p.message for p in caught.value.problems}
    assert "is not a DNS host name" in lines[(3, "domains[0].domain")]
    assert "'none', 'quarantine' or 'reject'" in lines[(4, "domains[0].dmarc.min_policy")]
    assert "not a DKIM selector: b@d" in next(m for (ln, f), m in lines.items() if f.startswith("domains[1]"))
    assert "either mailbox" in next(m for (ln, f), m in lines.items() if f.startswith("probe"))
