"""Change what the lab's MTA-STS policy host serves mid-test (lab/mta_sts.py reads its files per request).

`served` puts the policy (and optionally another status and headers) in place and restores the
lab's own afterwards, even when the test fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def served(lab: dict, body: str | bytes | None, response: dict | None = None) -> Iterator[None]:
    """Serve `body` (None: no file, so 404) with `response` ({"status": ..., "headers": {...}}) if given."""
    folder = Path(lab["mta_sts"]["policy_dir"])
    policy, control = folder / "mta-sts.txt", folder / "response.json"
    before = policy.read_bytes()
    try:
        if body is None:
            policy.unlink()
        else:
            policy.write_bytes(body.encode() if isinstance(body, str) else body)
        if response is not None:
            control.write_text(json.dumps({"headers": {}, **response}))
        yield
    finally:
        policy.write_bytes(before)
        control.unlink(missing_ok=True)
