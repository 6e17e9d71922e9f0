"""The mailroom's JetStream side: mailroom.drain, and what mailroom.enqueue (--via jetstream) and
mailroom.status (the stream and its consumers) use. docs/scale-out.md describes the backend."""

from __future__ import annotations

from typing import Annotated

import typer

from spine_comms.contracts.inbox import INBOX_CONTRACT, InboxContract
from spine_comms.contracts.jetstream import JetStream
from spine_comms.core.capability import capability
from spine_comms.core.context import RunContext
from spine_comms.core.errors import UsageError
from spine_comms.core.result import Check, Result, Status
from spine_comms.mailroom.jetstream import PROMPT_SOURCE, Connection, JetStreamUnavailable, connect


def settings_of(contract: InboxContract | None) -> JetStream:
    settings = contract.mailroom.jetstream if contract else None
    if settings is None:
        hint = f"add mailroom.jetstream (servers, stream, ...) to bindings/{INBOX_CONTRACT}"
        raise UsageError("no JetStream configured", hint=hint)
    return settings


def open_stream(ctx: RunContext, contract: InboxContract | None) -> Connection:
    connection = connect(settings_of(contract), ctx.secrets.resolve)
    try:
        connection.ensure()
    except BaseException:
        connection.close()
        raise
    return connection


def enqueue(ctx: RunContext, contract: InboxContract | None, item: str, *, slug: str, rid: str, session: str) -> dict:
    """A prompt published exactly once; an explicit run id already published with other content is a conflict."""
    with open_stream(ctx, contract) as connection:
        published = connection.publish_item(item, source=PROMPT_SOURCE, slug=slug, run_id=rid, session_id=session)
        same = True
        if published.existed and published.seq is not None:
            same = connection.message_data(published.seq) in (None, item.encode("utf-8"))
    return {"stream": connection.settings.stream, "subject": published.subject, "seq": published.seq,
            "already_enqueued": published.existed, "how": published.how, "same_content": same,
            "path": f"{connection.settings.stream}:{published.seq}:{published.subject}"}  # fmt: skip


def add_stream_status(ctx: RunContext, contract: InboxContract, result: Result, max_age_seconds: float) -> None:
    """The stream and its consumers into mailroom.status: pending, redelivered, oldest unacknowledged age."""
    settings = contract.mailroom.jetstream
    try:
        with connect(settings, ctx.secrets.resolve) as connection:
            stream = connection.status(ctx.clock())
    except JetStreamUnavailable as exc:
        result.add(
            Check(
                id="mailroom.jetstream.reachable", status=Status.ERROR, detail=exc.message, subject=settings.servers[0]
            )
        )
        return
    result.data["jetstream"] = stream
    if not stream["exists"]:
        result.add(
            Check(
                id="mailroom.jetstream.stream",
                status=Status.WARN,
                detail=f"stream {settings.stream} does not exist yet (nothing published)",
                subject=settings.stream,
            )
        )
        return
    result.add(
        Check(
            id="mailroom.jetstream.stream",
            status=Status.OK,
            detail=f"{stream['messages']} message(s), R{stream['replicas']}",
            subject=settings.stream,
        )
    )
    names = [c["name"] for c in stream["consumers"]]
    for group in [g for g in settings.agent_groups if g not in names]:
        result.add(
            Check(
                id="mailroom.jetstream.group",
                status=Status.WARN,
                detail=f"agent group {group} has no consumer yet: it is made at the next poll, enqueue or "
                "drain with this contract (mailroom.drain --group)",
                subject=group,
            )
        )
    if settings.drain_consumer not in names:
        result.add(
            Check(
                id="mailroom.jetstream.drain",
                status=Status.WARN,
                detail=f"no consumer {settings.drain_consumer}: nothing has drained this stream yet (mailroom.drain)",
                subject=settings.stream,
            )
        )
    for consumer in stream["consumers"]:
        age = consumer["oldest_unacked_age_seconds"]
        late = age is not None and age > max_age_seconds
        waited = "-" if age is None else f"{age:g}"
        detail = (f"{consumer['pending']} pending, {consumer['ack_pending']} unacknowledged, "
                  f"{consumer['redelivered']} redelivered, oldest waiting {waited} s")  # fmt: skip
        result.add(
            Check(
                id="mailroom.jetstream.consumer",
                status=Status.WARN if late else Status.OK,
                detail=detail + ("; is its reader down?" if late else ""),
                subject=f"{consumer['name']} ({consumer['role']})",
                expected=f"<= {max_age_seconds:g} s",
                actual=age,
            )
        )
        result.summary.append(f"jetstream {settings.stream}/{consumer['name']}: {detail}")


@capability("mailroom.drain", safety="mutating", approval="auto")
def mailroom_drain(
    ctx: RunContext,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many messages (default: all).")] = None,
    wait: Annotated[
        float, typer.Option(min=0.1, max=600, help="Stop once no message came for this many seconds.")
    ] = 1.0,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="Drain this agent group's consumer (mailroom.jetstream.agent_groups) into this host's mailroom, "
            "sharing the group's items with its other members. Default: the spine's drain consumer.",
        ),
    ] = None,
    dry_run: bool = True,  # the runner's: --dry-run or not --execute
) -> Result:
    """Drain the inbox contract's JetStream stream into the mailroom's queued/ lane, acknowledging each
    message only after its item file is in place (same name, format and atomic write as the file mailroom).
    --group NAME drains an agent group's own consumer on that group's host (docs/scale-out.md)."""
    from spine_comms.mailroom.drain import drain

    contract = ctx.contracts.load(INBOX_CONTRACT, InboxContract) if ctx.contracts.exists(INBOX_CONTRACT) else None
    settings = settings_of(contract)
    consumer = _consumer_of(settings, group)
    if dry_run:
        return _drain_preview(ctx, contract, settings, consumer)
    with open_stream(ctx, contract) as connection:
        outcome = drain(connection, ctx.mailroom.inbox, consumer=consumer, limit=limit, wait=wait)
    result = Result(data={"stream": settings.stream, "consumer": consumer, "group": group,
                          "inbox": str(ctx.mailroom.inbox), **outcome.to_dict()})  # fmt: skip
    result.add(
        Check(
            id="mailroom.drain.written",
            status=Status.OK,
            detail=f"{len(outcome.written)} item(s) written to queued/, "
            f"{len(outcome.already)} already there (acknowledged only)",
            subject=str(ctx.mailroom.inbox),
        )
    )
    if outcome.refused:
        result.add(
            Check(
                id="mailroom.drain.refused",
                status=Status.WARN,
                detail=f"{len(outcome.refused)} message(s) not spine-comms items: terminated, not written",
                evidence=outcome.refused[:20],
            )
        )
    result.summary = [f"DRAINED: {len(outcome.written)} written, {len(outcome.already)} already placed, "
                      f"{len(outcome.refused)} refused, {outcome.redelivered} redelivered"]  # fmt: skip
    return result


def _consumer_of(settings: JetStream, group: str | None) -> str:
    if group is None:
        return settings.drain_consumer
    if group not in settings.agent_groups:
        known = ", ".join(settings.agent_groups) or "none"
        raise UsageError(f"--group {group}: not an agent group of the contract (agent groups: {known})",
                         hint=f"add it to mailroom.jetstream.agent_groups in bindings/{INBOX_CONTRACT}")  # fmt: skip
    return group


def _drain_preview(ctx: RunContext, contract: InboxContract, settings: JetStream, name: str) -> Result:
    """What a drain would take: the consumer's pending messages (the whole stream before its first
    run). Nothing fetched, so nothing is delivered, written or acknowledged."""
    with connect(settings, ctx.secrets.resolve) as connection:
        stream = connection.status(ctx.clock())
    consumer = next((c for c in stream["consumers"] if c["name"] == name), None)
    waiting = (consumer["pending"] + consumer["ack_pending"]) if consumer else stream.get("messages", 0)
    result = Result(data={"stream": settings.stream, "consumer": name,
                          "inbox": str(ctx.mailroom.inbox), "would_drain": waiting, "dry_run": True})  # fmt: skip
    result.summary = [f"DRY RUN: would drain {waiting} message(s) from {settings.stream} into "
                      f"{ctx.mailroom.inbox / 'queued'} (--execute to drain)"]  # fmt: skip
    return result
