"""The mailroom on NATS JetStream: items published exactly once, read back by status and the drain.

One item is one stream message on `<prefix>.<source>.<run id>` (source: the mailbox id, or
`prompt` for mailroom.enqueue), its body the item text, its headers the parts of its file name
(Spine-Session, Spine-Slug, Spine-Run-Id), so the drain writes the very file the filesystem
mailroom would have written.

Exactly once into the stream, for a run id (the mailroom's dedup key: a function of the mailbox
and the message's bytes, so a re-poll asks for the same one):

1. the dedup bucket (a KV bucket, key = run id) has a record: already published, nothing sent;
2. the stream still holds a message on the item's own subject: already published (a publisher
   killed after its publish and before step 4), the record is written now;
3. publish with `Nats-Msg-Id` = run id and wait for the stream's acknowledgement (the stream
   drops a repeat inside its duplicate window and says so: `duplicate`);
4. the dedup record is written.

Only then does the caller advance its checkpoint. Steps 1-2 make a replay after the duplicate
window (days later, after a restore) still a no-op; step 3's window covers two publishers racing.

The client is nats-py (asyncio). The pipeline is synchronous, so a `Connection` runs one event
loop on a thread of its own and every call waits for its answer there, with the contract's timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import re
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from spine_comms.contracts.jetstream import JetStream
from spine_comms.core.errors import CouldNotEvaluate

SESSION_HEADER, SLUG_HEADER, RUN_ID_HEADER, SOURCE_HEADER = (
    "Spine-Session",
    "Spine-Slug",
    "Spine-Run-Id",
    "Spine-Source",
)
PROMPT_SOURCE = "prompt"
_KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+\Z")
_SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_-]+\Z")


class _QuietTlsEof(logging.Filter):
    """asyncio warns on every TLS connection nats-py closes ("returning true from eof_received() has
    no effect when using ssl"): noise on the CLI's stderr, about nothing the user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_QuietTlsEof())


class JetStreamUnavailable(CouldNotEvaluate):
    """The cluster could not be reached, refused the credentials, or did not acknowledge in time."""


@dataclass(frozen=True)
class Published:
    subject: str
    seq: int | None  # the stream sequence; None when only the dedup record was found
    existed: bool  # published before (dedup record, the stream's own copy, or its duplicate window)
    how: str  # "published" | "dedup record" | "in the stream" | "duplicate window"


def dedup_key(run_id: str) -> str:
    """The KV key of a run id: itself when KV allows its characters (the pipeline's R + hex always), else a hash."""
    return run_id if _KV_KEY.match(run_id) and not run_id.startswith(".") else "h-" + _sha(run_id)


def subject_for(prefix: str, source: str, run_id: str) -> str:
    """`<prefix>.<source>.<run id>`; a run id that is not one subject token (dots, colons) is hashed."""
    token = run_id if _SUBJECT_TOKEN.match(run_id) else "h-" + _sha(run_id)
    return f"{prefix}.{source}.{token}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _tls_context(settings: JetStream) -> ssl.SSLContext | None:
    if not any(url.startswith("tls://") for url in settings.servers):
        return None
    context = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else ssl.create_default_context()
    return context


class Connection:
    """One connection to the cluster, synchronous to its callers (an event loop on a private thread)."""

    def __init__(self, settings: JetStream, *, password: str | None = None, token: str | None = None) -> None:
        self.settings = settings
        self.timeout = settings.timeout_seconds
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jetstream", daemon=True)
        self._thread.start()
        self.errors: list[str] = []  # what the client reported asynchronously (never the password)
        try:
            self.nc = self.call(self._connect(password, token), timeout=self.timeout * 2)
        except BaseException:
            self._stop_loop()
            raise
        self.js = self.nc.jetstream(timeout=self.timeout)
        self._kv = None

    async def _connect(self, password: str | None, token: str | None):
        import nats

        async def note(exc: Exception) -> None:  # keeps nats-py from printing to stderr
            self.errors.append(f"{type(exc).__name__}: {exc}")

        options: dict[str, Any] = {
            "servers": self.settings.servers,
            "name": "spine-comms mailroom",
            "connect_timeout": self.timeout,
            # A watcher keeps its connection for days: it reconnects for ever, while each publish
            # in an outage times out on its own (the poll stops there and tries again later).
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "error_cb": note,
        }
        context = _tls_context(self.settings)
        if context is not None:
            options["tls"] = context
            if self.settings.server_name:
                options["tls_hostname"] = self.settings.server_name
        if self.settings.user:
            options.update(user=self.settings.user, password=password)
        if token:
            options["token"] = token
        return await nats.connect(**options)

    def call(self, coro: Coroutine, *, timeout: float | None = None):
        """Run `coro` on the connection's loop; a failure to reach or be answered is JetStreamUnavailable."""
        from nats import errors as nats_errors

        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=timeout or self.timeout * 3)
        except (TimeoutError, nats_errors.Error, OSError, ssl.SSLError) as exc:
            # Unreachable, refused credentials, no acknowledgement in time, or the server refusing a
            # request (a stream with more replicas than nodes): all are "could not evaluate" here,
            # with the server's own words; the caller keeps its checkpoint behind.
            future.cancel()
            where = ", ".join(self.settings.servers)
            detail = str(exc) or type(exc).__name__
            if self.errors:  # a timeout says little; the client's last error says why (refused, auth)
                detail += f" (last error: {self.errors[-1]})"
            raise JetStreamUnavailable(f"NATS JetStream at {where}: {detail}",
                                       hint="is the cluster up, and are the servers, CA and credentials right?"
                                       ) from None  # fmt: skip

    def close(self) -> None:
        try:
            if not self.nc.is_closed:
                self.call(self.nc.close(), timeout=self.timeout)
        except Exception:  # closing is best effort; what was acknowledged is already safe
            pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        async def cancel_the_rest() -> None:  # a connect still retrying, the client's own tasks
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the stream and the dedup bucket ---------------------------------------------------------

    def ensure(self) -> None:
        """The stream and the dedup bucket, created from the contract when missing (used as they are otherwise)."""
        self.call(self._ensure())

    async def _ensure(self) -> None:
        from nats.js.api import StorageType, StreamConfig

        s = self.settings
        config = StreamConfig(name=s.stream, subjects=[f"{s.subject_prefix}.>"], num_replicas=s.replicas,
                              duplicate_window=s.duplicate_window_seconds, storage=StorageType.FILE)  # fmt: skip
        await ready_stream(self.js, s.stream, lambda: self.js.add_stream(config), self.timeout)
        for group in s.agent_groups:  # each group's consumer exists from the first item on: status shows it waiting
            await self._ready_consumer(group)
        self._kv = await ready_bucket(self.js, s.dedup_bucket, s.replicas, s.dedup_days * 86400 or None, self.timeout)

    def consumer_config(self, name: str):
        """Every consumer of the mailroom alike: durable, pull, explicit ack, redelivered after the ack wait
        for as long as it takes (an item is never dropped for being slow), on every item subject."""
        from nats.js.api import AckPolicy, ConsumerConfig

        s = self.settings
        return ConsumerConfig(durable_name=name, ack_policy=AckPolicy.EXPLICIT, ack_wait=s.ack_wait_seconds,
                              max_deliver=-1, filter_subject=f"{s.subject_prefix}.>")  # fmt: skip

    async def _ready_consumer(self, name: str) -> None:
        """The durable consumer `name`, made when missing; one that exists is used as it is (idempotent,
        and two hosts making it at once end with one)."""
        from nats.js.errors import BadRequestError, NotFoundError

        try:
            await self.js.consumer_info(self.settings.stream, name)
        except NotFoundError:
            with contextlib.suppress(BadRequestError):  # made by another host at the same moment
                await self.js.add_consumer(self.settings.stream, self.consumer_config(name))

    # --- publishing ------------------------------------------------------------------------------

    def publish_item(self, text: str, *, source: str, slug: str, run_id: str, session_id: str) -> Published:
        """The item, exactly once (see the module's docstring); returns once the stream has it."""
        if self._kv is None:
            self.ensure()
        return self.call(self._publish(text, source, slug, run_id, session_id))

    async def _publish(self, text: str, source: str, slug: str, run_id: str, session_id: str) -> Published:
        from nats.js.errors import KeyNotFoundError, NotFoundError

        s = self.settings
        subject = subject_for(s.subject_prefix, source, run_id)
        key = dedup_key(run_id)

        async def record():
            try:
                return await self._kv.get(key)
            except KeyNotFoundError:
                return None

        async def last_on_subject():
            try:
                return await self.js.get_last_msg(s.stream, subject)
            except NotFoundError:
                return None

        # Steps 1 and 2 are both reads: asked at once, one round trip instead of two.
        entry, found = await asyncio.gather(record(), last_on_subject())
        if entry is not None:
            return Published(subject, json.loads(entry.value or b"{}").get("seq"), True, "dedup record")
        if found is not None:
            await self._record(key, subject, found.seq, run_id)
            return Published(subject, found.seq, True, "in the stream")
        headers = {"Nats-Msg-Id": run_id, SESSION_HEADER: session_id, SLUG_HEADER: slug, RUN_ID_HEADER: run_id,
                   SOURCE_HEADER: source}  # fmt: skip
        ack = await self.js.publish(subject, text.encode("utf-8"), stream=s.stream, headers=headers)
        await self._record(key, subject, ack.seq, run_id)
        return Published(subject, ack.seq, bool(ack.duplicate), "duplicate window" if ack.duplicate else "published")

    async def _record(self, key: str, subject: str, seq: int, run_id: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self._kv.put(key, json.dumps({"run_id": run_id, "subject": subject, "seq": seq, "at": stamp}).encode())

    # --- reading -----------------------------------------------------------------------------------

    def status(self, now: datetime) -> dict:
        return self.call(self._status(now))

    def status_now(self) -> dict:
        return self.status(datetime.now(UTC))

    async def _status(self, now: datetime) -> dict:
        from nats.js.errors import NotFoundError

        s = self.settings
        try:
            info = await self.js.stream_info(s.stream)
        except NotFoundError:
            return {"stream": s.stream, "exists": False, "consumers": []}
        state, config = info.state, info.config
        consumers = []
        for consumer in await self.js.consumers_info(s.stream):
            floor = consumer.ack_floor.stream_seq if consumer.ack_floor else 0
            oldest = None
            if consumer.num_pending or consumer.num_ack_pending:
                try:  # the first message this consumer has not acknowledged
                    first = await self.js.get_msg(s.stream, seq=(floor or 0) + 1, next=True,
                                                  subject=consumer.config.filter_subject)  # fmt: skip
                    oldest = round(max(0.0, (now - first.time).total_seconds()), 1) if first.time else None
                except NotFoundError:
                    oldest = None
            consumers.append({
                "name": consumer.name, "role": self._role(consumer.name), "pending": consumer.num_pending,
                "ack_pending": consumer.num_ack_pending,
                "redelivered": consumer.num_redelivered, "ack_floor": floor, "oldest_unacked_age_seconds": oldest,
            })  # fmt: skip
        return {
            "stream": s.stream,
            "exists": True,
            "messages": state.messages,
            "bytes": state.bytes,
            "first_seq": state.first_seq,
            "last_seq": state.last_seq,
            "replicas": config.num_replicas,
            "duplicate_window_seconds": config.duplicate_window,
            "subjects": config.subjects,
            "consumers": consumers,
        }

    def _role(self, name: str) -> str:
        if name == self.settings.drain_consumer:
            return "drain"
        return "agent group" if name in self.settings.agent_groups else "other"

    def message_data(self, seq: int) -> bytes | None:
        """The body of the stream's message `seq`; None when the stream no longer holds it."""
        from nats.js.errors import NotFoundError

        async def get():
            try:
                return (await self.js.get_msg(self.settings.stream, seq=seq)).data
            except NotFoundError:
                return None

        return self.call(get())

    def pull(self, consumer: str):
        """A durable pull subscription on every item subject (created with the contract's ack wait)."""
        if self._kv is None:
            self.ensure()
        s = self.settings
        return self.call(self.js.pull_subscribe(f"{s.subject_prefix}.>", durable=consumer, stream=s.stream,
                                                config=self.consumer_config(consumer)))  # fmt: skip

    def fetch(self, subscription, batch: int, wait: float) -> list:
        """Up to `batch` messages; [] when none came within `wait` seconds."""

        async def take():
            try:
                return await subscription.fetch(batch, timeout=wait)
            except TimeoutError:
                return []

        return self.call(take(), timeout=wait + self.timeout * 2)

    def ack(self, message) -> None:
        """Acknowledged and confirmed by the server: the item leaves the consumer for good."""
        self.call(message.ack_sync(timeout=self.timeout))

    def ack_soon(self, message) -> concurrent.futures.Future:
        """The acknowledgement sent now, its confirmation awaited later by `confirmed` (one wait per batch
        instead of one round trip per message)."""
        return asyncio.run_coroutine_threadsafe(message.ack_sync(timeout=self.timeout), self._loop)

    def confirmed(self, acks: list[concurrent.futures.Future]) -> None:
        """Every acknowledgement of `acks` confirmed by the server, or JetStreamUnavailable."""

        async def every():
            await asyncio.gather(*(asyncio.wrap_future(ack) for ack in acks))

        if acks:
            self.call(every())

    def terminate(self, message) -> None:
        self.call(message.term())


async def ready_stream(js, name: str, create: Callable[[], Coroutine], timeout: float) -> None:
    """The stream `name`, made by `create()` when missing, once it has a leader. Two pollers starting at
    once both try to make it (the server keeps one), and a fresh R3 stream answers nothing until its
    replicas have elected a leader: a publish then would fail with "no response from stream"."""
    from nats.js.errors import BadRequestError, NotFoundError

    deadline = asyncio.get_running_loop().time() + timeout
    tried = False
    while True:
        try:
            info = await js.stream_info(name)
            if info.cluster is None or info.cluster.leader:
                return
        except NotFoundError:
            if not tried:
                tried = True
                with contextlib.suppress(BadRequestError):  # made by another poller at the same moment
                    await create()
                continue
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"stream {name} has no leader after {timeout:g} s")
        await asyncio.sleep(0.1)


async def ready_bucket(js, bucket: str, replicas: int, ttl: float | None, timeout: float):
    """A KV bucket (made with one revision per key, `ttl` as its max age, when missing), once it has a leader."""
    from nats.js.api import KeyValueConfig, StorageType

    config = KeyValueConfig(bucket=bucket, history=1, replicas=replicas, storage=StorageType.FILE, ttl=ttl)
    await ready_stream(js, f"KV_{bucket}", lambda: js.create_key_value(config), timeout)
    return await js.key_value(bucket)


def connect(settings: JetStream, resolve: Callable[..., Any]) -> Connection:
    """A connection with the contract's credentials; `resolve(ref, override_env=, what=)` is ctx.secrets.resolve."""
    password = token = None
    if settings.user:
        password = resolve(settings.password_ref, override_env="NATS_MAILROOM_PASSWORD",
                           what="NATS mailroom password").value  # fmt: skip
    elif settings.token_ref:
        token = resolve(settings.token_ref, what="NATS mailroom token").value
    return Connection(settings, password=password, token=token)
