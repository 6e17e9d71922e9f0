"""contract.endpoints.sync: the endpoints the status capabilities reached, written into the stack contract.

The evidence is the latest receipt of each status capability that reached its
server: calendar.caldav.status and contacts.carddav.status (base URL, principal,
home set per account), sieve.status (ManageSieve host and port per mailbox),
communications.inbox.health or .poll (the mailboxes and folders polled over
IMAP), stalwart.status (the management API's URL, form and version).

They go into one new top-level section, `service_endpoints`, so the spine's
file keeps loading as it is (unknown keys are kept) and nothing it already has
changes. Only endpoints go there, never run keys or times: a second run over the
same servers changes nothing. Entries no longer seen are kept and reported (the
sync never deletes). The edit is round-trip (core.yaml_roundtrip): comments,
order and quoting of everything else stay byte for byte. A dry run with a
unified diff by default; `--execute` writes, with manual approval (`--yes`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from spine_comms.contracts.stack import STACK_CONTRACT, StackContract
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.receipt_seal import ReceiptVerifier
from spine_comms.core.receipts import list_receipts
from spine_comms.core.result import Check, Result, Status
from spine_comms.core.yaml_roundtrip import RoundTripYaml

SECTION = "service_endpoints"
# section -> the capabilities whose receipts can prove it, first preferred
SOURCES = {
    "caldav": ("calendar.caldav.status",),
    "carddav": ("contacts.carddav.status",),
    "managesieve": ("sieve.status",),
    "imap_poll": ("communications.inbox.health", "communications.inbox.poll"),
    "admin_api": ("stalwart.status",),
}
RECEIPTS_LOOKED_AT = 20  # per capability: the newest that reached its server is enough


def _dav(data: dict, capability_id: str) -> dict[str, Any]:
    out = {}
    for account, entry in sorted((data.get("accounts") or {}).items()):
        discovery = entry.get("discovery") or {} if isinstance(entry, dict) else {}
        if entry.get("base_url") and discovery.get("home_set"):
            out[account] = {"url": entry["base_url"], "principal": discovery.get("principal"),
                            "home_set": discovery["home_set"], "verified_by": capability_id}  # fmt: skip
    return out


def _sieve(data: dict, capability_id: str) -> dict[str, Any]:
    out = {}
    for mailbox, entry in sorted((data.get("mailboxes") or {}).items()):
        if not isinstance(entry, dict) or not entry.get("capabilities") or ":" not in str(entry.get("endpoint")):
            continue  # never connected: nothing was found
        host, _, port = str(entry["endpoint"]).rpartition(":")
        found = {"host": host.strip("[]"), "port": int(port) if port.isdigit() else port}
        if entry["capabilities"].get("implementation"):
            found["implementation"] = entry["capabilities"]["implementation"]
        out[mailbox] = {**found, "script": entry.get("script"), "verified_by": capability_id}
    return out


def _imap(data: dict, capability_id: str) -> dict[str, Any]:
    out = {}
    for entry in data.get("mailboxes") or []:
        if not isinstance(entry, dict) or entry.get("error") or not entry.get("mailbox"):
            continue
        folders = [f.get("folder") for f in entry.get("folders") or [] if isinstance(f, dict) and f.get("folder")]
        if not folders:
            continue  # not reached (health lists a folder only after EXAMINE answered)
        found = {"address": entry.get("address"), "folders": folders}
        endpoint = entry.get("endpoint")
        if isinstance(endpoint, dict):  # host, port, security when the receipt records them
            found.update({k: endpoint[k] for k in ("host", "port", "security") if endpoint.get(k) is not None})
        out[entry["mailbox"]] = {**found, "verified_by": capability_id}
    return out


def _admin(data: dict, capability_id: str) -> dict[str, Any]:
    if not data.get("url") or not data.get("form"):
        return {}  # the management API did not answer as itself
    found = {"url": data["url"], "api": data["form"]}
    if data.get("version"):
        found["version"] = str(data["version"])
    parts = urlsplit(data["url"])
    if data["form"] == "jmap":
        found["jmap_session"] = f"{parts.scheme}://{parts.netloc}/.well-known/jmap"
    return {**found, "verified_by": capability_id}


READERS = {"caldav": _dav, "carddav": _dav, "managesieve": _sieve, "imap_poll": _imap, "admin_api": _admin}


def found_endpoints(ctx: RunContext) -> tuple[dict[str, Any], dict[str, str]]:
    """(section -> what was found, section -> the run key that proves it), from the newest
    receipt of each source capability that reached its server."""
    found, proofs = {}, {}
    verifier = ReceiptVerifier(ctx.root.receipts_dir, ctx.env, ctx.root.path)
    for section, capability_ids in SOURCES.items():
        for capability_id in capability_ids:
            for summary in list_receipts(ctx.root.receipts_dir, capability_id)[:RECEIPTS_LOOKED_AT]:
                if forged := verifier.problems(summary.directory):  # never write what a forgery claims
                    ctx.log(f"{summary.directory.name} refused as evidence: {forged[0]}", level="warn")
                    continue
                try:
                    document = json.loads((summary.directory / "receipt.json").read_text(encoding="utf-8"))
                    data = document["envelope"]["data"] or {}
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # a spine-runner receipt (no receipt.json) or a broken one
                entry = READERS[section](data, capability_id) if isinstance(data, dict) else {}
                if entry:
                    found[section], proofs[section] = entry, summary.run_key
                    break
            if section in found:
                break
    return found, proofs


def _not_seen(existing: Any, found: dict[str, Any]) -> list[str]:
    """Entries the contract has that no receipt showed this time (kept, reported)."""
    out = []
    for section, entries in (existing or {}).items() if isinstance(existing, dict) else []:
        if section in found and isinstance(entries, dict) and section != "admin_api":
            out += [f"{section}.{name}" for name in entries if name not in found[section]]
    return out


@capability("contract.endpoints.sync", safety="mutating", approval="manual")
def endpoints_sync(
    ctx: RunContext,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute, approval asked
) -> Result:  # fmt: skip
    """Write the CalDAV, CardDAV, ManageSieve, IMAP-poll and admin/JMAP endpoints that the status
    capabilities reached (their latest receipts) into the stack contract's `service_endpoints`
    section, round-trip. A dry run with a diff unless --execute --yes; a second run changes nothing."""
    execute = not dry_run  # decided by the runner, which also asked for approval
    ctx.contracts.load(STACK_CONTRACT, StackContract)  # valid before, and its sha256 in the receipt
    path = ctx.contracts.path(STACK_CONTRACT)
    doc = RoundTripYaml.load(path)
    found, proofs = found_endpoints(ctx)
    result = Result(data={"contract": str(path), "mode": "execute" if execute else "dry-run", "section": SECTION,
                          "found": found, "proofs": proofs, "by_hand": [], "written": False})  # fmt: skip
    for section, capability_ids in SOURCES.items():
        if section in found:
            detail = f"{len(found[section]) if section != 'admin_api' else 1} found ({proofs[section]})"
            result.add(Check(f"endpoints.sync.{section}", Status.OK, detail, section, actual=proofs[section]))
        else:
            result.add(Check(f"endpoints.sync.{section}", Status.WARN, f"no receipt of {' or '.join(capability_ids)} "
                             "that reached its server; run it first", section))  # fmt: skip
    existing = doc.data.get(SECTION) if isinstance(doc.data, dict) else None
    not_seen = _not_seen(existing, found)
    for name in not_seen:
        result.add(Check("endpoints.sync.not_seen", Status.WARN, f"{name} is in the contract but not in the latest "
                         "receipt; kept (the sync never deletes): remove it by hand if it is gone", name))  # fmt: skip
    if found:
        if existing is None or not isinstance(existing, dict):
            doc.add_entry((), SECTION, found)
        else:
            result.data["by_hand"] = doc.merge((SECTION,), found)
        if doc.text != doc.original and isinstance(doc.data.get("updated_at"), str):
            doc.set_scalar(("updated_at",), ctx.clock().strftime("%Y-%m-%d"))
    for name in result.data["by_hand"]:
        result.add(Check("endpoints.sync.by_hand", Status.WARN, f"{name} cannot change round-trip; edit it by hand",
                         name))  # fmt: skip
    diff = doc.diff(path.name)
    result.data["diff"] = diff.splitlines()
    StackContract.model_validate(doc.data)  # the edited contract still loads as the stack contract
    if not diff:
        result.summary.append(f"{path.name}: {SECTION} already matches the receipts; nothing to do")
    elif not execute:
        result.add(Check("endpoints.sync.contract", Status.WARN, f"{path.name} differs from what was found",
                         str(path), "in sync", "differs"))  # fmt: skip
        result.summary += ["dry run: the diff:", *diff.splitlines(), "run again with --execute --yes to write it"]
    else:
        doc.save(path)
        result.data["written"] = True
        result.add(Check("endpoints.sync.contract", Status.OK, f"{path.name} written", str(path), "in sync",
                         "written"))  # fmt: skip
        result.summary += [f"{path.name}: written", *diff.splitlines()]
    return result
