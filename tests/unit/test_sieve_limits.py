"""Where sieve.status takes a script size limit from: the contract, Stalwart's release line, or HAVESPACE."""

from __future__ import annotations

import pytest

from spine_comms.contracts.sieve import SieveMailbox
from spine_comms.protocols.managesieve import Capabilities
from spine_comms.sieve.status import script_limit

STALWART = Capabilities(implementation="Stalwart ManageSieve", version="1.0")
DOVECOT = Capabilities(implementation="Dovecot Pigeonhole", version="1.0")


def box(**managesieve) -> SieveMailbox:
    return SieveMailbox(id="ops", managesieve=managesieve)


@pytest.mark.parametrize(
    ("caps", "managesieve", "limit", "source"),
    [
        (STALWART, {"server_version": "0.15.5"}, 1024 * 1024, "Stalwart 0.15.5"),
        (STALWART, {"server_version": "0.14"}, 1024 * 1024, "Stalwart 0.14"),
        (STALWART, {"server_version": "0.16.2"}, 100 * 1024, "Stalwart 0.16.2"),
        (STALWART, {"server_version": "1.0.0"}, 100 * 1024, "Stalwart 1.0.0"),
        (STALWART, {}, 100 * 1024, "release unknown"),
        (STALWART, {"max_script_bytes": 5000, "server_version": "0.15.5"}, 5000, "max_script_bytes"),
        (DOVECOT, {"server_version": "0.15.5"}, None, "HAVESPACE"),
    ],
)
def test_script_limit(caps, managesieve, limit, source):
    found, where = script_limit(box(**managesieve), caps)
    assert found == limit and source in where


def test_a_version_that_is_not_one_is_refused_at_contract_load():
    with pytest.raises(ValueError):
        box(server_version="latest")
