"""dkim.keygen: make a DKIM key, keep the private half in a 0600 file, print the TXT record to publish.

The private key only ever goes to its file: not to stdout, the receipt or the
logs. What is printed is public (the record, a zone line, the fingerprint), so
the output can be pasted into a DNS provider or a change request as it is.

Files are laid out as opendkim-genkey lays them, `<dir>/<domain>/<selector>.private`,
so OpenDKIM (and the lab) can use them without renaming, and one directory per
domain keeps a rotation's keys side by side.
"""

from __future__ import annotations

import datetime
import os
import re
import stat
from pathlib import Path
from typing import Annotated

import typer

from spine_comms.contracts.mailauth import HOSTNAME, MAILAUTH_CONTRACT, DkimKeys, MailAuthContract
from spine_comms.core.atomic import write_atomic
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Check, Result, Status
from spine_comms.mail.dkim_record import (
    generate_key,
    key_fingerprint,
    key_strength,
    parse_dkim_record,
    private_key_matches,
    render_selector,
    txt_strings,
    zone_line,
)

DEFAULT_TTL = 3600


@capability("dkim.keygen", safety="mutating", approval="auto")
def dkim_keygen(
    ctx: RunContext,
    domain: Annotated[
        str | None,
        typer.Option(help="The signing domain (d=). Default: the contract's only domain; required if it has several."),
    ] = None,
    ed25519: Annotated[
        bool, typer.Option("--ed25519", help="Also generate an Ed25519 key (RFC 8463). An RSA-2048 key is always made.")
    ] = False,
    selector: Annotated[
        str | None,
        typer.Option(
            help="The selector, or a template ({yyyy} {mm} {dd} {yyyymm} {yyyymmdd} {algorithm}), instead of the "
            "contract's dkim_keys.rsa_selector/ed25519_selector (default {yyyymm}r / {yyyymm}e). With --ed25519 it "
            "must contain {algorithm}, so the two keys get different selectors."
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            help="Write keys under this directory (relative to the current directory). "
            "Default: the contract's dkim_keys.directory (relative to the root), else secrets/dkim."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace an existing key file. The old key is lost, and mail signed with the new one fails DKIM "
            "until its TXT record is published.",
        ),
    ] = False,
    date: Annotated[
        str | None, typer.Option(help="The date for the selector template, YYYY-MM-DD (default: today, UTC).")
    ] = None,
) -> Result:
    """Generate a DKIM key pair and print the DNS TXT record to publish.

    Writes one file per key, <dir>/<domain>/<selector>.private (PEM, mode 0600, directories 0700),
    and nothing else; never over an existing file unless --force. Prints the record name, the TXT value
    in 255-byte strings, a zone-file line and the key's fingerprint; never the private key."""
    contract = _contract(ctx)
    policy = contract.dkim_keys if contract else DkimKeys()
    chosen = _domain(domain, contract)
    when = _date(date, ctx)
    algorithms = ["rsa", "ed25519"] if ed25519 else ["rsa"]
    selectors = _selectors(selector, policy, algorithms, when)
    base = _directory(ctx, out, policy)
    target_dir = base / chosen
    files = {algo: target_dir / f"{selectors[algo]}.private" for algo in algorithms}
    if not force:  # refuse before writing anything, so a refusal never leaves half a rotation behind
        for path in files.values():
            if path.exists():
                raise _exists(path)

    result = Result()
    _make_private_dirs(base, target_dir, result)
    if contract and not contract.domain(chosen):
        names = ", ".join(d.domain for d in contract.domains)
        result.add(
            Check(
                id="dkim.keygen.domain_in_contract",
                status=Status.WARN,
                detail=f"{chosen} is not in the contract ({names})",
                subject=chosen,
                expected=names,
                actual=chosen,
            )
        )
    keys = []
    for algo in algorithms:
        keys.append(_one_key(ctx, result, chosen, algo, selectors[algo], files[algo], force))
    result.data = {
        "domain": chosen,
        "date": when.isoformat(),
        "directory": str(target_dir),
        "contract": str(ctx.contracts.path(MAILAUTH_CONTRACT)) if contract else None,
        "keys": keys,
    }
    return result


def _contract(ctx: RunContext) -> MailAuthContract | None:
    """The contract when there is one; keygen also works without it, given --domain."""
    if not ctx.contracts.exists(MAILAUTH_CONTRACT):
        return None
    return ctx.contracts.load(MAILAUTH_CONTRACT, MailAuthContract)


def _domain(given: str | None, contract: MailAuthContract | None) -> str:
    if given is None:
        if contract is None:
            raise UsageError(f"no --domain and no {MAILAUTH_CONTRACT}", hint="pass --domain example.com")
        if len(contract.domains) != 1:
            names = ", ".join(d.domain for d in contract.domains)
            raise UsageError(f"the contract has {len(contract.domains)} domains ({names}): pass --domain")
        given = contract.domains[0].domain
    name = given.strip().rstrip(".").lower()
    if not re.match(HOSTNAME, name) or len(name) > 253:
        raise UsageError(f"--domain {given!r} is not a domain name")
    return name


def _date(given: str | None, ctx: RunContext) -> datetime.date:
    if given is None:
        return ctx.clock().date()
    try:
        return datetime.date.fromisoformat(given)
    except ValueError:
        raise UsageError(f"--date {given!r} is not a date in the form YYYY-MM-DD") from None


def _selectors(override: str | None, policy: DkimKeys, algorithms: list[str], when: datetime.date) -> dict[str, str]:
    if override is not None and len(algorithms) > 1 and "{algorithm}" not in override:
        raise UsageError(
            f"--selector {override!r} would name both keys alike",
            hint="with --ed25519 give a template with {algorithm} (e.g. 'k{yyyymm}-{algorithm}'), or run twice",
        )
    templates = {"rsa": policy.rsa_selector, "ed25519": policy.ed25519_selector}
    out = {}
    for algo in algorithms:
        try:
            out[algo] = render_selector(override if override is not None else templates[algo], algo, when)
        except ValueError as exc:
            where = "--selector" if override is not None else f"dkim_keys.{algo}_selector in {MAILAUTH_CONTRACT}"
            raise UsageError(f"{where}: {exc}") from None
    if len(set(out.values())) != len(out):
        raise UsageError(f"both keys would get the selector {out['rsa']!r}: the templates must differ")
    return out


def _directory(ctx: RunContext, out: str | None, policy: DkimKeys) -> Path:
    if out is not None:
        return Path(out).expanduser().absolute()
    path = Path(policy.directory).expanduser()
    return path if path.is_absolute() else ctx.root.path / path


def _exists(path: Path) -> UsageError:
    return UsageError(
        f"{path} exists: not overwriting a DKIM key",
        hint="pass --force to replace it (mail signed with the new key fails DKIM until its TXT record is published)",
    )


def _make_private_dirs(base: Path, target: Path, result: Result) -> None:
    """Create what is missing with 0700; report (not change) an existing directory others can read."""
    for directory in (base, target):
        if directory.is_dir():
            mode = stat.S_IMODE(directory.stat().st_mode)
            if mode & 0o077:
                result.add(
                    Check(
                        id="dkim.keygen.directory_private",
                        status=Status.WARN,
                        detail=f"{directory} is readable by others (mode {mode:04o})",
                        subject=str(directory),
                        expected="0700",
                        actual=f"{mode:04o}",
                    )
                )
            continue
        try:
            directory.mkdir(parents=True, mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is cut by the umask
        except OSError as exc:
            raise UsageError(f"cannot create {directory}: {exc.strerror}") from None


def _write_private(path: Path, pem: bytes, force: bool) -> bool:
    """Write the key 0600, whole or not at all; returns whether a file was replaced."""
    existed = path.exists()
    try:
        write_atomic(path, pem, 0o600, overwrite=force)
    except FileExistsError:
        raise _exists(path) from None
    return existed


def _one_key(ctx: RunContext, result: Result, domain: str, algo: str, selector: str, path: Path, force: bool) -> dict:
    name = f"{selector}._domainkey.{domain}"
    ctx.log(f"generating {algo} key for {name}")
    pem, value = generate_key(algo)
    try:
        replaced = _write_private(path, pem, force)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    mode = stat.S_IMODE(path.stat().st_mode)
    record = parse_dkim_record(value)
    fingerprint = key_fingerprint(algo, record.tags["p"])
    strength, why = key_strength(record)
    matches, match_detail = private_key_matches(path.read_bytes(), record)

    result.add(
        Check(
            id="dkim.keygen.key_written",
            status=Status.OK if mode == 0o600 else Status.FAIL,
            detail=f"{'replaced' if replaced else 'wrote'} {path} (mode {mode:04o})",
            subject=name,
            expected="a PEM file, mode 0600",
            actual=f"{mode:04o}",
            evidence={"file": str(path), "mode": f"{mode:04o}", "replaced": replaced},
        )
    )
    result.add(
        Check(
            id="dkim.keygen.record_valid",
            status=Status(strength) if not record.problems else Status.FAIL,
            detail=why,
            subject=name,
            expected="a DKIM1 record with a 2048-bit RSA or 32-byte Ed25519 key",
            actual=record.bits,
            evidence={"txt": value, "problems": record.problems},
        )
    )
    result.add(
        Check(
            id="dkim.keygen.key_matches_record",
            status=Status.OK if matches else Status.FAIL,
            detail=match_detail,
            subject=name,
            expected=fingerprint,
            actual=fingerprint if matches else "a different key",
            evidence={"file": str(path)},
        )
    )
    strings = txt_strings(value)
    line = zone_line(name, value, DEFAULT_TTL)
    result.summary += [
        f"{algo} key, selector {selector}: {'replaced' if replaced else 'wrote'} {path} (0600)",
        f"publish TXT at {name}. ({len(strings)} string{'s' if len(strings) > 1 else ''}):",
        line,
        f"fingerprint {fingerprint}",
    ]
    return {
        "algorithm": algo,
        "selector": selector,
        "record_name": f"{name}.",
        "txt_value": value,
        "txt_strings": strings,
        "zone_line": line,
        "fingerprint": fingerprint,
        "bits": record.bits,
        "private_key_file": str(path),
        "replaced": replaced,
    }
