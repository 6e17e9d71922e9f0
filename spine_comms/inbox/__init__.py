"""Phase 3, mail in: IMAP polling and watching that enqueue every message into the mailroom exactly once.

The package in one view, top to bottom (imports point down; pyproject's `inbox-stages` contract
holds the poll path to this order):

    capabilities   poll.py (the spine's listing, or --enqueue), poll_enqueue.py (its report),
                   watch.py + watch_loop.py (IDLE, in the foreground), health.py (the gate),
                   listing.py (the spine's unseen listing)
    per mailbox    pipeline.py      SELECT, compare with the checkpoint, SEARCH, batches, commit
    per message    intake.py        dedup, then the three stages below, then stage the files
    the stages     fetch.py         FETCH batches, the next one fetched on a second thread
                   normalize.py     parse: the stored .json and the spine's item (pure)
                   policy.py        decide: queued, parked or dropped, and why (secret screen too)
                   commit.py        the order that makes a batch durable and each message once
    where it goes  delivery.py      filesystem mailroom or the bridge; jetstream_target.py for NATS
                   store.py         the state directory: .eml, .json, the delivered index
                   staging.py       a batch's writes synced once, then placed
                   checkpoint.py    UIDVALIDITY / last UID / lock per folder;
                                    jetstream_checkpoints.py the same in KV, with a lease
    reporting      outcome.py       what one poll of one mailbox did

docs/mail-in.md walks the same path with the guarantees each step keeps.
"""
