"""Secrets by reference, and a sentinel that must never appear in output, logs or receipts."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from spine_comms.core.context import GlobalOptions
from spine_comms.core.errors import SecretError
from spine_comms.core.result import Check, Result, Status
from spine_comms.core.runner import execute
from spine_comms.core.secrets import Redactor, Secrets

SENTINEL = "s3ntinel-Pa55-wOrd-7f1c"


def secrets(env=None, spine_root=None) -> Secrets:
    return Secrets(Redactor(), env or {}, spine_root)


def test_env_file_and_cmd_references(tmp_path):
    f = tmp_path / "pw"
    f.write_text(SENTINEL + "\n")
    s = secrets({"OPS_PW": SENTINEL})
    assert s.resolve("env:OPS_PW").value == SENTINEL
    assert s.resolve(f"file:{f}").value == SENTINEL
    assert s.resolve(f"cmd:printf {SENTINEL}").value == SENTINEL
    assert s.resolve(f"cmd:printf {SENTINEL}").source == "cmd:printf ..."


def test_the_spines_variable_overrides_the_reference():
    s = secrets({"STALWART_OPS_PASSWORD": SENTINEL, "OTHER": "other-value"})
    got = s.resolve("env:OTHER", override_env="STALWART_OPS_PASSWORD")
    assert got.value == SENTINEL and got.source == "env:STALWART_OPS_PASSWORD"


def test_infisical_paths_go_through_the_spines_agent_script(tmp_path):
    agent = tmp_path / "ops/tools/infisical-agent.sh"
    agent.parent.mkdir(parents=True)
    agent.write_text(
        '#!/bin/bash\n[ "$1 $2 $3 $4" = "get infrastructure prod STALWART_OPS_PASSWORD" ] && printf "%s" "$SECRET"\n'
    )
    agent.chmod(agent.stat().st_mode | stat.S_IXUSR)
    s = secrets({"SECRET": SENTINEL}, spine_root=tmp_path)
    assert s.resolve("infisical://spine/services/communications/STALWART_OPS_PASSWORD").value == SENTINEL
    with pytest.raises(SecretError, match=r"needs the spine's ops/tools/infisical-agent\.sh"):
        secrets().resolve("infisical://spine/services/communications/STALWART_OPS_PASSWORD")


@pytest.mark.parametrize(
    ("ref", "message"),
    [("env:NOPE", "environment variable NOPE is not set"), ("file:/no/such/file", "cannot read /no/such/file"),
     ("cmd:false", "cmd:false ... exited 1"), ("vault:x", "unknown secret reference scheme 'vault'"),
     (None, "no secret configured")],
)  # fmt: skip
def test_unresolvable_references_are_clear(ref, message):
    with pytest.raises(SecretError) as caught:
        secrets().resolve(ref)
    assert message in caught.value.message


def test_a_failing_command_does_not_leak_its_output():
    with pytest.raises(SecretError) as caught:
        secrets().resolve(f"cmd:sh -c 'echo {SENTINEL}; exit 3'")
    assert SENTINEL not in str(caught.value.lines())


def test_redactor_covers_encodings():
    r = Redactor()
    r.add(SENTINEL)
    import base64
    import urllib.parse

    text = f"a {SENTINEL} b {base64.b64encode(SENTINEL.encode()).decode()} c {urllib.parse.quote(SENTINEL)}"
    assert SENTINEL not in r(text) and r(text).count("[REDACTED]") == 3
    assert r.redact_obj({"k": [SENTINEL, 1]}) == {"k": ["[REDACTED]", 1]}


def test_the_sentinel_never_reaches_stdout_stderr_or_any_receipt_file(root):
    """A capability that (wrongly) puts the secret everywhere it can: the frame must scrub it all."""

    def leaky(ctx):
        password = ctx.secrets.resolve("env:LAB_PW", what="ops password")
        ctx.log(f"logging in with {password.value}")
        return Result(
            data={"password": password.value, "nested": [{"x": f"pw={password.value}"}]},
            checks=[
                Check(
                    id="t.login",
                    status=Status.FAIL,
                    detail=f"refused {password.value}",
                    evidence={"sent": password.value},
                )
            ],
            summary=[f"tried {password.value}"],
        )

    out, err = io.StringIO(), io.StringIO()
    code = execute(
        capability="test.secrets.leak", safety="read-only", approval="auto", function=leaky, kwargs={},
        options=GlobalOptions(root=str(root), json=True), argv=["spine-comms", "test.secrets.leak"],
        env={"LAB_PW": SENTINEL}, stdout=out, stderr=err,
    )  # fmt: skip
    assert code == 1
    envelope = json.loads(out.getvalue())
    receipt_dir = Path(envelope["receipt"])
    everything = {"stdout": out.getvalue(), "stderr": err.getvalue()}
    for path in receipt_dir.iterdir():
        everything[path.name] = path.read_text()
    everything["ledger"] = (root / "mailroom/state/ledger.csv").read_text()
    assert set(everything) >= {"receipt.md", "receipt.json", "output.txt"}
    for name, text in everything.items():
        assert SENTINEL not in text, f"the secret leaked into {name}"
    assert "[REDACTED]" in everything["output.txt"] and "[REDACTED]" in everything["receipt.json"]


def test_a_private_key_is_redacted_whoever_sent_it():
    """A PEM private key never reaches output: whole, cut short, or inside JSON's escaped line breaks."""
    import json

    from spine_comms.core.secrets import Redactor
    from tests.stalwart_fake import generate_private_pem

    redact = Redactor()
    for kind in ("rsa", "ed25519"):
        pem = generate_private_pem(kind)
        secret_line = pem.splitlines()[1]
        for text in (pem, f"error value={pem} end", json.dumps({"value": pem}), pem[: len(pem) // 2]):
            out = redact(text)
            assert secret_line not in out and "[REDACTED] (a private key)" in out, out
    assert redact("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----") == (
        "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----"
    )  # a public key is no secret
