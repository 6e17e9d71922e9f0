"""The stored .json is encoded by orjson; it must read back as json's encoding of the same data did."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spine_comms.inbox.store import dumps
from spine_comms.mail.message import parse_message

CORPUS = sorted((Path(__file__).resolve().parents[1] / "corpus" / "hostile").glob("*.eml"))


def reference(data) -> object:
    return json.loads(json.dumps(data, ensure_ascii=False, default=str))


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), JSONISH, max_size=6))
def test_any_json_data_reads_back_as_json_wrote_it(data) -> None:
    encoded = dumps(data)
    assert encoded.endswith(b"\n")
    assert json.loads(encoded) == reference(data)


def test_values_json_could_only_write_through_default_read_back_the_same() -> None:
    data = {"when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), 7: "int key", "big": 2**70, "none": None}
    assert json.loads(dumps(data)) == reference(data)


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_every_hostile_message_normalized_reads_back_the_same(path: Path) -> None:
    normalized = parse_message(path.read_bytes()).to_dict()
    assert json.loads(dumps(normalized)) == reference(normalized)
