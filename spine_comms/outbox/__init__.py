"""Mail out: the durable, idempotent send (communications.mail.send), its outbox and bounces."""
