"""What agents ask of a mailbox beyond the inbox loop: search (and, next, threads)."""
