"""Contracts + environment overrides + secrets -> ready clients: the one layer that does it.

Protocol modules know the wire and nothing of contracts, environment variables or secrets (import-linter
holds them to it); domain packages ask here:

    mailbox.py      a mailbox over IMAP for the inbox (the inbox contract filled in from the stack
                    contract, STALWART_IMAP_HOST/PORT, STALWART_<ID>_USER/PASSWORD), a stack mailbox
                    over one protocol for the probe and the outbox, and its password
    managesieve.py  a routing-contract mailbox over ManageSieve
    dav.py          a DAV account (CALENDAR_HOME_PASSWORD for the first)
    stalwart.py     Stalwart's management API ($STALWART_ADMIN_SECRET)

The mailroom's own clients are built beside them, below the capabilities that use them:
mailroom/bridge.py (`bridge_client`: MAILROOM_BRIDGE_TOKEN, then MAILROOM_BRIDGE_TOKEN_FILE, as the
bridge reads them) and mailroom/jetstream.py (`connect`, the inbox contract's jetstream section).
"""
