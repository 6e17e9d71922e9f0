"""The contract's DAV collections, for calendars and address books alike: discover, check, create.

calendar.caldav.status/ensure and contacts.carddav.status/ensure are the same walk
with a different vocabulary (MKCALENDAR or extended MKCOL, calendar-access or
addressbook), so the walk lives here once and `Kind` (dav_lookup) carries the words. Each account
is surveyed on its own: one that refuses the login or cannot be reached is an
`error` check naming it, and the other accounts are still reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from spine_comms.calendar.dav_lookup import Kind, client_for, failure_hint, last_segment, unknown_accounts
from spine_comms.contracts.dav import DAV_CONTRACT, DavContract
from spine_comms.core.result import Check, Result, Status

if TYPE_CHECKING:
    from spine_comms.contracts.dav import Account
    from spine_comms.protocols.dav import Collection, DavClient, Discovery


@dataclass
class Survey:
    """What one account looks like from here: discovery, OPTIONS, the collections under its home set."""

    discovery: Discovery
    classes: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    collections: list[Collection] = field(default_factory=list)

    def find(self, collection_id: str) -> Collection | None:
        return next((c for c in self.collections if last_segment(c.href) == collection_id), None)


# ---- the contract and the connections ----------------------------------------------------------------


def load(ctx, account_ids: list[str] | None) -> tuple[DavContract, list[Account]]:
    contract = ctx.contracts.load(DAV_CONTRACT, DavContract)
    unknown_accounts(contract, account_ids or [])
    chosen = [contract.account(a) for a in dict.fromkeys(account_ids)] if account_ids else list(contract.accounts)
    return contract, chosen


def resolver_for(ctx):
    """The stack contract's endpoints.dns (the lab's Knot in tests), else the system resolver."""
    from spine_comms.contracts.stack import STACK_CONTRACT, StackContract
    from spine_comms.protocols.dns import Resolver

    if ctx.contracts.exists(STACK_CONTRACT):
        stack = ctx.contracts.load(STACK_CONTRACT, StackContract)
        if stack.endpoints and stack.endpoints.dns:
            conf = stack.endpoints.dns
            return Resolver(conf.server, conf.port, conf.timeout_seconds)
    return Resolver()


def account_error(kind: Kind, account: Account, exc) -> Check:
    """A DavError that stops one account: `error` (could not evaluate), naming the account, never a password."""
    hint = failure_hint(exc)
    detail = f"account {account.id}: {exc.message}" + (f" ({hint})" if hint else "")
    return Check(f"{kind.protocol}.account.reachable", Status.ERROR, detail, account.id, "answers, login accepted",
                 exc.kind, {"url": exc.url, "status": exc.status, "kind": str(exc.failure_kind),
                            "dav_kind": exc.kind})  # fmt: skip


# ---- the survey ------------------------------------------------------------------------------------------


def survey(client: DavClient, account: Account, kind: Kind, resolver) -> Survey:
    from spine_comms.protocols.dav import discover, list_collections

    resolve = resolver.query if account.domain else None
    found = discover(client, kind.protocol, domain=account.domain, resolve_srv=resolve)
    view = Survey(found)
    if found.home_set:
        view.classes, view.methods = client.options(found.home_set)
        view.collections = list_collections(client, found.home_set, kind.collection)
    return view


def discovery_checks(kind: Kind, account: Account, client: DavClient, view: Survey, resolver) -> list[Check]:
    p, found, subject = kind.protocol, view.discovery, account.id
    steps = [asdict(s) for s in found.steps]
    out = []
    well_known = [s for s in found.steps if s.name == "well-known"]
    followed = bool(well_known) and all(s.detail.startswith("redirect to ") for s in well_known)
    detail = "; ".join(f"{s.url} -> HTTP {s.status} ({s.elapsed_ms} ms): {s.detail}" for s in well_known)
    out.append(Check(f"{p}.discovery.well_known", Status.OK if followed else Status.WARN, detail, subject,
                     "a redirect on the same host", [s.status for s in well_known],
                     [asdict(s) for s in well_known]))  # fmt: skip
    if account.domain:
        out.append(_srv_check(kind, account, client, found, resolver))
    for name, value, what in (("principal", found.principal, "current-user-principal"),
                              ("home_set", found.home_set, f"{kind.collection}-home-set")):  # fmt: skip
        step = [s for s in found.steps if s.name == name.replace("_", "-")]
        shown = "; ".join(f"{s.url} -> HTTP {s.status} ({s.elapsed_ms} ms): {s.detail}" for s in step)
        status = Status.OK if value else Status.FAIL
        out.append(Check(f"{p}.discovery.{name}", status, shown or f"no {what}", subject, f"a {what}", value,
                         [asdict(s) for s in step] or steps))  # fmt: skip
    return out


def _srv_check(kind: Kind, account: Account, client: DavClient, found: Discovery, resolver) -> Check:
    """Do the domain's SRV records lead to this account's server (same port, same address or name)?"""
    p = kind.protocol
    steps = [asdict(s) for s in found.steps if s.name == "srv"]
    if not found.srv:
        return Check(f"{p}.discovery.srv", Status.WARN, f"no _{p}s/_{p} SRV records for {account.domain}: clients "
                     "must be given the URL by hand", account.id, "SRV records", [], steps)  # fmt: skip
    wanted = {client.host, client.server_name} - {None}
    matching = []
    for entry in found.srv:
        target = entry.split(" ", 1)[0]
        host, port = target.rsplit(":", 1)
        names = {host.lower()}
        answer = resolver.query(host, "A")
        names |= set(answer.records) if answer.ok else set()
        if int(port) == client.port and names & wanted:
            matching.append(entry)
    if matching:
        return Check(f"{p}.discovery.srv", Status.OK, f"SRV leads here: {', '.join(matching)}", account.id,
                     f"{client.origin}", found.srv, steps)  # fmt: skip
    return Check(f"{p}.discovery.srv", Status.WARN, f"SRV records point elsewhere than {client.origin}: "
                 f"{', '.join(found.srv)}", account.id, client.origin, found.srv, steps)  # fmt: skip


def options_check(kind: Kind, account: Account, view: Survey) -> Check:
    advertised = kind.dav_class in view.classes
    detail = f"DAV: {', '.join(view.classes) or '(none)'}"
    if not advertised:
        detail = f"{kind.dav_class} is not advertised; {detail}"
    return Check(f"{kind.protocol}.options.dav_classes", Status.OK if advertised else Status.FAIL, detail, account.id,
                 kind.dav_class, view.classes, {"dav": view.classes, "allow": view.methods})  # fmt: skip


def _same_color(want: str, have: str | None) -> bool:
    # Apple clients store #RRGGBBAA; #RRGGBB and #RRGGBBFF are the same colour.
    norm = lambda c: (c or "").lower().removesuffix("ff") if len(c or "") == 9 else (c or "").lower()  # noqa: E731
    return norm(want) == norm(have)


def mismatches(kind: Kind, item, found: Collection) -> list[str]:
    """What differs between the contract's wishes and an existing collection (PROPPATCH is out of scope)."""
    out = []
    if item.display_name is not None and item.display_name != found.display_name:
        out.append(f"display name {found.display_name!r}, contract {item.display_name!r}")
    if kind.collection == "calendar":
        if item.color is not None and not _same_color(item.color, found.color):
            out.append(f"colour {found.color!r}, contract {item.color!r}")
        # An empty set means the server did not say; RFC 4791 5.2.3 reads that as "any".
        missing = [c for c in item.components if found.components and c not in found.components]
        if missing:
            out.append(f"components {', '.join(found.components)}; lacks {', '.join(missing)}")
    return out


def collection_checks(
    kind: Kind, account: Account, item, found: Collection | None, *, hint_ensure: bool
) -> list[Check]:
    p, subject = kind.protocol, f"{account.id}/{item.id}"
    if found is None:
        fix = f"; run {kind.ensure} --execute" if hint_ensure else ""
        return [Check(f"{p}.collection.exists", Status.FAIL, f"{kind.noun} {item.id} is missing{fix}", subject,
                      item.id, None)]  # fmt: skip
    shown = collection_dict(found)
    out = [Check(f"{p}.collection.exists", Status.OK, f"{found.href} ({found.display_name or 'no display name'})",
                 subject, item.id, found.href, shown)]  # fmt: skip
    differ = mismatches(kind, item, found)
    out.append(Check(f"{p}.collection.properties", Status.WARN if differ else Status.OK,
                     "; ".join(differ) if differ else "as the contract says", subject,
                     _wished(kind, item), shown))  # fmt: skip
    return out


def _wished(kind: Kind, item) -> dict:
    out = {"display_name": item.display_name}
    if kind.collection == "calendar":
        out |= {"color": item.color, "components": list(item.components)}
    return out


def collection_dict(found: Collection) -> dict:
    return asdict(found)


def summary_lines(account: Account, view: Survey) -> list[str]:
    lines = [f"{account.id}: principal {view.discovery.principal or '-'}, home set {view.discovery.home_set or '-'}"]
    for c in view.collections:
        sync = "sync-collection" if c.supports_sync else "no sync"
        extra = f" {c.color}" if c.color else ""
        lines.append(f"  {c.href}  {c.display_name or '-'}{extra}  [{', '.join(c.components) or '-'}]  {sync}")
    return lines


def account_data(account: Account, client: DavClient, view: Survey) -> dict:
    return {
        "base_url": client.base_url,
        "discovery": asdict(view.discovery),
        "dav_classes": view.classes,
        "methods": view.methods,
        "collections": [collection_dict(c) for c in view.collections],
    }


def empty_result() -> Result:
    return Result(data={"accounts": {}})


# ---- the two capabilities' bodies ------------------------------------------------------------------------


def run_status(ctx, kind: Kind, account_ids: list[str] | None) -> Result:
    from spine_comms.protocols.dav import DavError

    contract, accounts = load(ctx, account_ids)
    resolver = resolver_for(ctx)
    result = empty_result()
    for account in accounts:
        client = client_for(ctx, contract, account)
        ctx.log(f"{kind.protocol}: surveying account {account.id} at {client.base_url}")
        try:
            with client:
                view = survey(client, account, kind, resolver)
                result.checks += discovery_checks(kind, account, client, view, resolver)
        except DavError as exc:
            result.add(account_error(kind, account, exc))
            result.summary.append(f"{account.id}: {exc.message}")
            continue
        if view.discovery.home_set:
            result.add(options_check(kind, account, view))
        for item in kind.wanted(contract, account.id):
            if view.discovery.home_set:
                result.checks += collection_checks(kind, account, item, view.find(item.id), hint_ensure=True)
            else:
                result.add(Check(f"{kind.protocol}.collection.exists", Status.SKIP,
                                 f"not checked: no {kind.collection}-home-set found", f"{account.id}/{item.id}",
                                 item.id, None))  # fmt: skip
        result.data["accounts"][account.id] = account_data(account, client, view) | {"requests": client.requests}
        result.summary += summary_lines(account, view)
    return result


def run_ensure(ctx, kind: Kind, account_ids: list[str] | None, execute: bool) -> Result:
    from spine_comms.protocols.dav import DavError

    contract, accounts = load(ctx, account_ids)
    resolver = resolver_for(ctx)
    mode = "execute" if execute else "dry-run"
    result = empty_result()
    actions: list[dict] = []
    for account in accounts:
        client = client_for(ctx, contract, account)
        try:
            with client:
                actions += _ensure_account(ctx, kind, contract, account, client, resolver, result, execute)
        except DavError as exc:
            result.add(account_error(kind, account, exc))
            result.summary.append(f"{account.id}: {exc.message}")
    result.data["mode"] = mode
    result.data["actions"] = actions
    creates = [a for a in actions if a["action"] == "create"]
    done = [a for a in creates if a["done"]]
    if execute and done and len(done) < len(creates):
        result.status = Status.PARTIAL
    if not creates:
        result.summary.append(f"nothing to do: every contract {kind.noun} exists")
    elif not execute:
        result.summary.append(f"dry run: would create {len(creates)} {kind.noun}(s); run again with --execute")
    for a in actions:
        result.summary.append(f"{a['account']}  {a['id']}  {a['href'] or '-'}  {a['action']}: {a['note']}")
    return result


def _action(account: Account, item, href, action: str, mode: str, note: str, done: bool = False) -> dict:
    return {"account": account.id, "id": item.id, "href": href, "action": action, "mode": mode, "done": done,
            "note": note}  # fmt: skip


def _ensure_account(ctx, kind, contract, account, client, resolver, result: Result, execute: bool) -> list[dict]:
    from spine_comms.protocols.dav import child_href, list_collections

    mode = "execute" if execute else "dry-run"
    view = survey(client, account, kind, resolver)
    home = view.discovery.home_set
    if not home:
        result.checks += [c for c in discovery_checks(kind, account, client, view, resolver) if c.status != Status.OK]
        return [_action(account, item, None, "blocked", mode, f"no {kind.collection}-home-set found")
                for item in kind.wanted(contract, account.id)]  # fmt: skip
    actions, created = [], []
    for item in kind.wanted(contract, account.id):
        found = view.find(item.id)
        if found is not None:
            result.checks += collection_checks(kind, account, item, found, hint_ensure=False)
            actions.append(_action(account, item, found.href, "none", mode, "exists"))
            continue
        href = child_href(home, item.id) + "/"
        if not execute:
            result.add(
                Check(
                    f"{kind.protocol}.ensure.create",
                    Status.WARN,
                    f"missing; would create {href}",
                    f"{account.id}/{item.id}",
                    item.id,
                    None,
                    {"would_create": href} | _wished(kind, item),
                )
            )
            actions.append(_action(account, item, href, "create", mode, "planned"))
            continue
        actions.append(_create(ctx, kind, account, client, item, href, result))
        created.append(item)
    if created:
        # Read back what the server now lists: the proof is the listing, not the 201.
        view.collections = list_collections(client, home, kind.collection)
        for item in created:
            result.checks += collection_checks(kind, account, item, view.find(item.id), hint_ensure=False)
    return actions


def _create(ctx, kind: Kind, account: Account, client: DavClient, item, href: str, result: Result) -> dict:
    from spine_comms.protocols.dav import DavError

    subject = f"{account.id}/{item.id}"
    try:
        occupant = [r for r in client.propfind(href, ["{DAV:}resourcetype"], 0) if r.status < 300]
    except DavError as exc:
        if exc.kind != "not_found":
            raise
        occupant = []
    if occupant:
        kinds = occupant[0].props.get("{DAV:}resourcetype")
        note = f"{href} exists but is not a {kind.noun} (resourcetype {kinds})"
        result.add(Check(f"{kind.protocol}.ensure.create", Status.FAIL, note, subject, item.id, kinds))
        return _action(account, item, href, "create", "execute", note)
    ctx.log(f"{account.id}: creating {kind.noun} {href}")
    try:
        if kind.collection == "calendar":
            client.mkcalendar(href, display_name=item.display_name, color=item.color,
                              components=list(item.components), description=item.description)  # fmt: skip
        else:
            client.mkcol_addressbook(href, display_name=item.display_name, description=item.description)
    except DavError as exc:
        if exc.kind in ("auth", "unreachable", "timeout"):
            raise
        result.add(Check(f"{kind.protocol}.ensure.create", Status.FAIL, f"the server refused: {exc.message}", subject,
                         item.id, exc.kind, {"status": exc.status, "url": exc.url}))  # fmt: skip
        return _action(account, item, href, "create", "execute", f"refused: {exc.message}")
    result.add(Check(f"{kind.protocol}.ensure.create", Status.OK, f"created {href}", subject, item.id, href))
    return _action(account, item, href, "create", "execute", "created", done=True)
