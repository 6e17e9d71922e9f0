"""Contract tests: spine-comms against the Stalwart fake (tests/stalwart_fake.py), in both API forms."""

from __future__ import annotations

import pytest

from tests.stalwart_fake import FakeStalwart
from tests.unit.conftest import _every_receipt_is_valid, cli  # noqa: F401  (fixtures shared with unit tests)

MODES = ["0.16", "0.15"]


@pytest.fixture(params=MODES)
def fake(request):
    """A running fake with one domain, example.test, and no DKIM keys, in each API form."""
    with FakeStalwart(request.param, dkim_delay=0.2) as server:
        server.add_domain("example.test")
        yield server


@pytest.fixture
def fake_tls(request):
    """The 0.16 fake on TLS whose certificate names only mail.example.test (so 127.0.0.1 needs server_name)."""
    with FakeStalwart("0.16", tls=True) as server:
        server.add_domain("example.test")
        yield server
