"""Phase 3, mail in: IMAP polling and watching that enqueue every message into the mailroom exactly once."""
