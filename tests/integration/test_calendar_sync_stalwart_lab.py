"""calendar.sync.execute against a server that answers sync-collection as Stalwart does.

Stalwart never refuses a sync token: one it cannot parse gets a full listing (207), one older than
its change log a partial delta with no error. tests/stalwart_dav_front.py puts that behaviour in
front of the lab's Radicale; these tests hold the sync to finding deletions all the same.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.test_calendar_sync_lab import Site, kinds
from tests.stalwart_dav_front import StalwartDavFront

pytestmark = pytest.mark.lab


@pytest.fixture
def stalwart_like(request, tmp_path, lab, lab_root):
    """(Site, front): a sync into a new Radicale calendar, reached through the Stalwart-behaviour front."""
    with StalwartDavFront(f"http://127.0.0.1:{lab['ports']['radicale']}/") as front:
        site = Site(tmp_path, lab_root, "radicale")
        path = site.root / "bindings" / "communications.dav.contract.yaml"
        contract = yaml.safe_load(path.read_text())
        for account in contract["accounts"]:
            if account["id"] == "radicale":
                account["base_url"] = front.url
                account.pop("server_name", None)
                account.pop("ca_file", None)
        path.write_text(yaml.safe_dump(contract, sort_keys=False))
        yield site, front, path
        site.client.close()


def listing_every(path, hours: float) -> None:
    contract = yaml.safe_load(path.read_text())
    contract["sync"]["full_listing_every_hours"] = hours
    path.write_text(yaml.safe_dump(contract, sort_keys=False))


def test_a_deletion_a_truncated_delta_hides_is_found_by_the_periodic_full_listing(stalwart_like):
    site, front, contract = stalwart_like
    listing_every(contract, 1000)
    code, first = site.execute()
    assert code == 0 and "create" in set(kinds(first).values())
    victim = next(a for a in first["data"]["actions"] if a["action"] == "create")
    site.client.delete(victim["href"])
    front.truncate_deltas = True  # the server's change log no longer reaches back to our token
    code, blind = site.execute()
    assert code == 0 and "create" not in set(kinds(blind).values())  # the delta says nothing happened
    assert front.deletions_dropped >= 1
    listing_every(contract, 0)  # the delta is trusted no longer: list the whole calendar
    code, seen = site.execute()
    assert code == 0 and kinds(seen)[victim["event_id"]] == "create", kinds(seen)
    assert victim["href"] in site.members()
    state = json.loads(site.state.read_text())
    assert state["full_listing_at"]


def test_a_full_listing_answered_to_a_delta_request_is_taken_as_one(stalwart_like):
    site, front, _ = stalwart_like
    code, first = site.execute()
    assert code == 0
    victim = next(a for a in first["data"]["actions"] if a["action"] == "create")
    site.client.delete(victim["href"])
    state = json.loads(site.state.read_text())
    state["sync_token"] = "http://radicale.org/ns/sync/not-a-token-of-this-server"
    site.state.write_text(json.dumps(state))
    code, envelope = site.execute()
    # The front answered the refused token with everything (207): unchanged ETags give it away, so the
    # sync lists the calendar and sees the deletion, instead of reading the listing as "nothing deleted".
    assert front.full_listings_for_refused_tokens == 1
    assert code == 0 and kinds(envelope)[victim["event_id"]] == "create", kinds(envelope)


def set_account(path, **fields) -> None:
    contract = yaml.safe_load(path.read_text())
    next(a for a in contract["accounts"] if a["id"] == "radicale").update(fields)
    contract["sync"]["retry"] = {"max_attempts": 1, "backoff_seconds": [0]}  # no retry of our own
    path.write_text(yaml.safe_dump(contract, sort_keys=False))


def test_stalwart_rate_limiting_is_waited_out_with_python_caldavs_hints_for_stalwart(stalwart_like):
    """Stalwart answers 429 + Retry-After when rate-limited; python-caldav's hints for Stalwart say to wait
    and send again. With server_kind generic the same answer is a failed write."""
    site, front, contract = stalwart_like
    set_account(contract, server_kind="generic")
    front.rate_limit_puts = 1
    code, refused = site.execute()
    assert code == 1 and front.rate_limited == 1
    assert "429" in json.dumps(refused["data"]), refused["data"]
    set_account(contract, server_kind="stalwart")
    front.rate_limit_puts = 2
    code, envelope = site.execute()
    assert code == 0, envelope["data"]
    assert front.rate_limited == 3 and front.rate_limit_puts == 0
    assert "create" in set(kinds(envelope).values())
