"""Pure functions over mail and its DNS records: SPF, DMARC, DKIM keys, authentication results."""
