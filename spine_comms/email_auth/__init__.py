"""Phase 1, email authentication: DNS records, DKIM keys, Stalwart's view, the probe."""
