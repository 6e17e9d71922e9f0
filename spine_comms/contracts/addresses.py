"""What a contract may name as a mail recipient: a plain address (user@domain), nothing that could carry
a display name, a second address or a header."""

from __future__ import annotations

import re

# The same form communications.mail.send accepts for --to/--cc/--bcc: no spaces, brackets, commas or quotes,
# a dotted domain.
PLAIN_ADDRESS = re.compile(r"^[^@\s<>,;\"()\[\]\\]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")


def plain_address(value: str) -> bool:
    return bool(PLAIN_ADDRESS.match(value)) and not any(ord(c) < 32 or ord(c) == 127 for c in value)
