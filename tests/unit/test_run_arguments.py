"""Exactly the run a proof names: recorded arguments parsed by the capability's own options."""

from __future__ import annotations

import pytest

from spine_comms.governance.run_arguments import arguments_of, proof_args_problem, same_run

PACK = ["communications"]


@pytest.mark.parametrize(
    ("argv", "counts"),
    [
        (["spine-comms", "verify.pack.run", "communications"], True),
        (["spine-comms", "verify.pack.run"], True),  # the pack's default is communications
        (["spine-comms", "--root", "/r", "verify.pack.run", "--root=/r", "communications", "--json", "--strict"], True),
        (["spine-comms", "cap", "run", "verify.pack.run", "--", "communications", "--jobs", "2"], True),
        (["spine-comms", "verify.pack.run", "communications", "--junit", "communications"], True),
        (["spine-comms", "verify.pack.run", "communications", "--gate", "D903"], False),
        (["spine-comms", "verify.pack.run", "communications", "--gate", "D901", "--gate", "D902"], False),
        (["spine-comms", "verify.pack.run", "hygiene-weekly"], False),
        (["spine-comms", "verify.pack.run", "--prom", "communications"], True),  # a file named like the pack
        (["spine-comms", "verify.pack.run", "communications", "--no-such-option"], False),
        (["spine-comms", "verify.core.run"], False),  # another capability on the line
    ],
)  # fmt: skip
def test_only_the_full_pack_proves_the_pack(argv, counts):
    assert same_run("verify.pack.run", argv, PACK) is counts


@pytest.mark.parametrize(
    ("args", "counts"),
    [
        (["--execute", "--yes"], True),
        (["--yes", "--execute", "--timeout", "5"], True),
        (["--execute", "--rollback", "--yes"], False),
        (["--execute", "--mailbox", "ops", "--yes"], False),
        (["--execute", "--allow-extension", "vacation"], False),
        ([], False),  # a dry run
    ],
)  # fmt: skip
def test_only_an_apply_that_is_not_a_rollback_proves_the_apply(args, counts):
    assert same_run("sieve.apply", ["spine-comms", "sieve.apply", *args], ["--execute"]) is counts


def test_arguments_of_drops_only_the_shared_options():
    argv = ["spine-comms", "--json", "x.y", "--root", "/r", "--debug", "a", "--no-color", "--strict", "-v"]
    assert arguments_of("x.y", argv) == ["a", "-v"]
    assert arguments_of("x.z", argv) is None


def test_capabilities_this_toolkit_does_not_know_compare_every_word():
    assert same_run("spine.thing", ["spine-comms", "spine.thing", "--b", "--a"], ["--a", "--b"])
    assert not same_run("spine.thing", ["spine-comms", "spine.thing", "--a", "--gate", "x"], ["--a"])


def test_proof_arguments_the_capability_does_not_take_are_named():
    assert proof_args_problem("sieve.apply", ["--execute"]) is None
    assert proof_args_problem("sieve.apply", ["--exec"]) == "--exec are not arguments sieve.apply accepts"
    assert proof_args_problem("calendar.event.create", [], ["--summary", "--start"]) is None
    assert proof_args_problem("gaps.close", [], ["--idd"]) == "allow: --idd not an option of gaps.close"
