"""communications.stack.status against TLS listeners started here, with a throwaway CA."""

from __future__ import annotations

import datetime as dt
from contextlib import ExitStack
from pathlib import Path

import pytest
import trustme
import yaml

from tests.unit.tls_servers import tls_listener

PROTOCOLS = ["SMTP", "SMTPS", "STARTTLS", "IMAPS", "IMAP", "ManageSieve", "HTTPS"]
NAME = "mail.spine.test"


def _root(tmp_path: Path, ports: dict[str, int], ca_file: str, server_name: str = NAME) -> Path:
    root = tmp_path / "root"
    (root / "bindings").mkdir(parents=True, exist_ok=True)
    contract = {
        "version": 1,
        "pilot": {
            "stage": "test",
            "ports": [{"container": p, "host": p, "protocol": proto} for proto, p in ports.items()],
            "mailboxes": [{"id": "ops", "address": "ops@spine.test"}],
        },
        "endpoints": {"host": "127.0.0.1", "server_name": server_name, "ca_file": ca_file, "timeout_seconds": 3},
    }
    (root / "bindings/communications.stack.contract.yaml").write_text(yaml.safe_dump(contract))
    return root


@pytest.fixture
def ca(tmp_path):
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, str(path)


def _run(cli, root, *extra):
    result = cli("communications.stack.status", "--root", str(root), "--json", *extra)
    return result, result.json()


def test_every_protocol_reaches_tls_and_is_ok(cli, tmp_path, ca):
    authority, ca_file = ca
    cert = authority.issue_cert(NAME, "127.0.0.1")
    with ExitStack() as stack:
        ports = {p: stack.enter_context(tls_listener(p, cert)) for p in PROTOCOLS}
        result, env = _run(cli, _root(tmp_path, ports, ca_file))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert env["status"] == "ok"
    assert set(env) >= {"capability", "schema_version", "status", "generated_at", "data", "run_key", "receipt"}
    rows = {row["protocol"]: row for row in env["data"]["endpoints"]}
    assert set(rows) == set(PROTOCOLS)
    for row in rows.values():
        assert row["tls_version"] in ("TLSv1.2", "TLSv1.3")
        assert row["verified"] is True and row["name_match"] is True
        assert row["days_until_expiry"] > 14
    assert rows["SMTP"]["greeting"].startswith("220")
    assert "test sieve" in rows["ManageSieve"]["greeting"]
    receipt = Path(env["receipt"])
    assert {p.name for p in receipt.iterdir()} == {"receipt.md", "output.txt", "receipt.json"}
    ledger = (tmp_path / "root/mailroom/state/ledger.csv").read_text().splitlines()
    assert ledger[0] == "run_id,created_at,started_at,finished_at,status,prompt_file,result_file,error,context_used"
    assert ledger[1].startswith(env["run_key"] + ",") and ",done,communications.stack.status," in ledger[1]


def test_name_mismatch_fails_but_chain_is_trusted(cli, tmp_path, ca):
    authority, ca_file = ca
    cert = authority.issue_cert("other.example", "127.0.0.2")
    with tls_listener("IMAPS", cert) as port:
        result, env = _run(cli, _root(tmp_path, {"IMAPS": port}, ca_file))
    assert result.exit_code == 1
    checks = {c["id"]: c for c in env["checks"]}
    assert checks["stack.tls.name_match"]["status"] == "fail"
    assert checks["stack.tls.name_match"]["actual"] == ["other.example", "127.0.0.2"]
    # The chain is the CA's: trust and name are reported apart, so the operator knows which to fix.
    assert checks["stack.tls.trusted"]["status"] == "ok"
    assert env["data"]["endpoints"][0]["verify_error"].startswith("Hostname mismatch")


def test_reaching_by_ip_works_with_a_server_name(cli, tmp_path, ca):
    authority, ca_file = ca
    cert = authority.issue_cert(NAME)  # no IP in the certificate at all
    with tls_listener("SMTPS", cert) as port:
        result, env = _run(cli, _root(tmp_path, {"SMTPS": port}, ca_file))
    assert result.exit_code == 0, result.stdout
    assert env["data"]["host"] == "127.0.0.1" and env["data"]["server_name"] == NAME


@pytest.mark.parametrize(
    ("days_left", "status", "code"),
    [(3, "fail", 1), (10, "warn", 0), (-2, "fail", 1), (60, "ok", 0)],
)
def test_expiry_thresholds(cli, tmp_path, ca, days_left, status, code):
    authority, ca_file = ca
    now = dt.datetime.now(dt.UTC)
    cert = authority.issue_cert(
        NAME, not_before=now - dt.timedelta(days=30), not_after=now + dt.timedelta(days=days_left)
    )
    with tls_listener("IMAPS", cert) as port:
        result, env = _run(cli, _root(tmp_path, {"IMAPS": port}, ca_file))
    checks = {c["id"]: c for c in env["checks"]}
    assert checks["stack.tls.expiry"]["status"] == status
    assert env["status"] == status if status != "ok" else env["status"] == "ok"
    assert result.exit_code == code


def test_warn_is_exit_1_under_strict(cli, tmp_path, ca):
    authority, ca_file = ca
    now = dt.datetime.now(dt.UTC)
    cert = authority.issue_cert(NAME, not_after=now + dt.timedelta(days=10))
    with tls_listener("IMAPS", cert) as port:
        result, env = _run(cli, _root(tmp_path, {"IMAPS": port}, ca_file), "--strict")
    assert env["status"] == "warn" and result.exit_code == 1


def test_untrusted_ca_fails_and_still_reports_the_certificate(cli, tmp_path, ca):
    _, ca_file = ca
    stranger = trustme.CA()
    cert = stranger.issue_cert(NAME)
    with tls_listener("HTTPS", cert) as port:
        result, env = _run(cli, _root(tmp_path, {"HTTPS": port}, ca_file))
    assert result.exit_code == 1
    row = env["data"]["endpoints"][0]
    assert row["verified"] is False and row["name_match"] is True and row["issuer"]
    assert {c["id"]: c["status"] for c in env["checks"]}["stack.tls.trusted"] == "fail"


@pytest.mark.parametrize("protocol", ["STARTTLS", "IMAP", "ManageSieve"])
def test_starttls_not_offered_is_a_failure_never_plain_text(cli, tmp_path, ca, protocol):
    authority, ca_file = ca
    with tls_listener(protocol, authority.issue_cert(NAME), offer_starttls=False) as port:
        result, env = _run(cli, _root(tmp_path, {protocol: port}, ca_file))
    assert result.exit_code == 1
    check = {c["id"]: c for c in env["checks"]}["stack.endpoint.protocol"]
    assert check["status"] == "fail"
    assert "STARTTLS" in check["detail"]
    assert env["data"]["endpoints"][0]["tls_version"] is None


def test_closed_port_is_unreachable(cli, tmp_path, ca):
    import socket

    _, ca_file = ca
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    result, env = _run(cli, _root(tmp_path, {"IMAPS": port}, ca_file))
    # Nothing answered, so nothing could be evaluated: error, exit 3, as in every capability.
    assert result.exit_code == 3 and env["status"] == "error"
    check = env["checks"][0]
    assert check["id"] == "stack.endpoint.reachable" and check["status"] == "error"
    assert check["evidence"]["kind"] == "unreachable" and "refused" in check["detail"]


def test_only_selects_endpoints_and_rejects_unknown(cli, tmp_path, ca):
    authority, ca_file = ca
    cert = authority.issue_cert(NAME)
    with tls_listener("IMAPS", cert) as imaps, tls_listener("SMTPS", cert) as smtps:
        root = _root(tmp_path, {"IMAPS": imaps, "SMTPS": smtps}, ca_file)
        _, env = _run(cli, root, "--only", "imaps")
        assert [r["protocol"] for r in env["data"]["endpoints"]] == ["IMAPS"]
        bad = cli("communications.stack.status", "--root", str(root), "--only", "POP3")
    assert bad.exit_code == 2
    assert "matches no endpoint" in bad.stdout


def test_plain_text_on_an_implicit_tls_port_fails_the_handshake(cli, tmp_path, ca):
    import socket
    import threading

    _, ca_file = ca
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer():
        conn, _ = server.accept()
        conn.sendall(b"* OK plain text where TLS was promised\r\n")
        conn.recv(4096)
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    result, env = _run(cli, _root(tmp_path, {"IMAPS": server.getsockname()[1]}, ca_file))
    server.close()
    checks = {c["id"]: c for c in env["checks"]}
    assert result.exit_code == 1
    assert checks["stack.tls.version"]["status"] == "fail"
    assert checks["stack.tls.version"]["detail"].startswith("TLS handshake failed")
    assert "stack.tls.expiry" not in checks  # nothing to date when there is no certificate


def test_a_hung_server_is_error_within_the_contract_timeout(cli, tmp_path, ca):
    """Connections accepted and never answered: could not evaluate (error, exit 3), not a finding, and
    each endpoint gives up after the stack contract's timeout (3 s here), in parallel."""
    import time

    from tests.silent_server import silent_listener

    _, ca_file = ca
    with silent_listener() as imaps, silent_listener() as smtp:
        started = time.monotonic()
        result, env = _run(cli, _root(tmp_path, {"IMAPS": imaps, "SMTP": smtp}, ca_file))
        took = time.monotonic() - started
    assert result.exit_code == 3 and env["status"] == "error", env["checks"]
    failed = [c for c in env["checks"] if c["status"] != "ok"]
    assert {(c["id"], c["status"], c["evidence"]["kind"]) for c in failed} == {
        ("stack.endpoint.protocol", "error", "timeout")
    }
    assert len(failed) == 2 and took < 3 * 2, took
