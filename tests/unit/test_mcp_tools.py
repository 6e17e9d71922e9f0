"""Capabilities as MCP tools, without the SDK: names, schemas, exposure and the command line a call runs."""

from __future__ import annotations

import anyio
import pytest

from spine_comms.capability_command import build_capability_command
from spine_comms.core.registry import load_registry
from spine_comms.groups import option_spec
from spine_comms.mcp import server
from spine_comms.mcp.tools import ToolArgumentError, command_arguments, exposed, make_tool, tool_name


def tool(cap_id: str):
    spec = load_registry().get(cap_id)
    return make_tool(spec, option_spec(spec))


def parsed(cap_id: str, arguments: dict) -> dict:
    """What the capability's own command line parser makes of the arguments a call turns into."""
    command = build_capability_command(load_registry().get(cap_id))
    with command.make_context(cap_id, command_arguments(tool(cap_id), arguments)) as ctx:
        return ctx.params


def test_every_capability_has_one_tool_named_as_the_spine_names_it():
    specs = list(load_registry().capabilities.values())
    names = [tool_name(s.id) for s in specs]
    assert len(set(names)) == len(specs)
    assert tool_name("communications.inbox.poll") == "communications_inbox_poll"
    assert tool_name("calendar.event.create") == "calendar_event_create"


def test_schema_types_required_and_confirm_come_from_the_option_spec():
    create = tool("calendar.event.create").input_schema
    assert create["additionalProperties"] is False
    assert {"summary", "start"} <= set(create["required"])
    send = tool("communications.mail.send").input_schema["properties"]
    assert send["to"] == {"type": "array", "items": {"type": "string"}, "description": send["to"]["description"]}
    assert send["execute"]["type"] == "boolean" and "confirm" not in send  # auto approval: no gate
    flush = tool("communications.outbox.flush").input_schema["properties"]
    assert flush["limit"]["type"] == "integer" and flush["limit"]["default"] == 100
    apply = tool("sieve.apply").input_schema["properties"]
    assert "yes" not in apply and apply["confirm"]["type"] == "boolean"
    assert "refused" in apply["confirm"]["description"]


def test_values_reach_the_capability_as_given_even_when_they_look_like_flags():
    got = parsed("communications.mail.send", {"to": ["a@spine.test", "b@spine.test"], "subject": "--execute",
                                               "body": "-x\n--yes", "execute": False})  # fmt: skip
    assert got["to"] == ["a@spine.test", "b@spine.test"]
    assert got["subject"] == "--execute" and got["body"] == "-x\n--yes"
    assert got["opt_execute"] is False  # the runner's safety flag (capability_command.safety_options)
    assert parsed("verify.pack.run", {"pack": "--junit"})["pack"] == "--junit"
    assert parsed("communications.stack.status", {"only": ["IMAPS"], "timeout": 0.5})["timeout"] == 0.5


def test_booleans_with_two_spellings_say_false_and_confirm_becomes_yes():
    assert parsed("calendar.sync.execute", {"stop_on_first_error": False})["stop_on_first_error"] is False
    assert parsed("calendar.sync.execute", {"stop_on_first_error": True})["stop_on_first_error"] is True
    assert parsed("calendar.sync.execute", {})["stop_on_first_error"] is None
    assert "--yes" in command_arguments(tool("sieve.apply"), {"confirm": True, "execute": True})
    assert "--yes" not in command_arguments(tool("sieve.apply"), {"confirm": False})


@pytest.mark.parametrize(
    ("cap_id", "arguments", "needle"),
    [
        ("communications.stack.status", {"bogus": 1}, "'bogus' was unexpected"),
        ("communications.outbox.flush", {"limit": "ten"}, "limit: 'ten' is not of type 'integer'"),
        ("calendar.event.create", {"summary": "x"}, "'start' is a required property"),
        ("communications.mail.send", {"to": "a@spine.test"}, "to: 'a@spine.test' is not of type 'array'"),
    ],
)
def test_arguments_outside_the_schema_are_refused_one_line_each(cap_id, arguments, needle):
    with pytest.raises(ToolArgumentError) as caught:
        command_arguments(tool(cap_id), arguments)
    assert any(needle in line for line in caught.value.problems), caught.value.problems


def test_destructive_tools_need_an_exact_allow_and_deny_wins():
    specs = list(load_registry().capabilities.values())
    ids = lambda chosen: {s.id for s in chosen}  # noqa: E731
    default, problems = exposed(specs, [], [])
    assert not problems and "gaps.close" not in ids(default) and "gaps.file" in ids(default)
    assert all(s.safety != "destructive" for s in default)
    assert ids(exposed(specs, ["gaps.*"], [])[0]) == {"gaps.file", "gaps.list"}  # a glob never exposes it
    assert "gaps.close" in ids(exposed(specs, ["gaps_close"], [])[0])
    assert "gaps.close" not in ids(exposed(specs, ["gaps.close"], ["gaps_*"])[0])
    read_only, _ = exposed(specs, ["*status"], ["sieve.*"])
    assert "mailroom.status" in ids(read_only) and "sieve.status" not in ids(read_only)
    assert exposed(specs, ["mailroom.stauts"], ["nothing*"])[1] == [
        "--allow 'mailroom.stauts' matches no capability",
        "--deny 'nothing*' matches no capability",
    ]


def test_manual_tools_are_refused_without_confirm_before_anything_runs(tmp_path):
    refused = anyio.run(server.run_tool, tool("sieve.apply"), {"execute": True}, tmp_path / "no-root", 5.0)
    assert refused["status"] == "error" and refused["error"]["reference"] == "approval-required"
    assert refused["run_key"] is None and "confirm=true" in refused["error"]["message"]
    bad = anyio.run(server.run_tool, tool("sieve.apply"), {"confirm": True, "execute": "yes"}, tmp_path, 5.0)
    assert bad["error"]["reference"] == "invalid-arguments"


def test_the_servers_approval_variables_never_reach_a_call(monkeypatch):
    monkeypatch.setenv("SPINE_CAP_AUTO_APPROVE", "yes")
    monkeypatch.setenv("OPS_CAP_AUTO_APPROVE", "yes")
    monkeypatch.setenv("SPINE_CAP_RUN_KEY", "CAP-20260101-000000__x__Rabc")
    env = server.child_env()
    assert not {"SPINE_CAP_AUTO_APPROVE", "OPS_CAP_AUTO_APPROVE", "SPINE_CAP_RUN_KEY"} & set(env)


def test_a_call_that_outruns_the_timeout_is_stopped_and_says_so(tmp_path):
    stopped = anyio.run(server.run_tool, tool("mailroom.status"), {}, tmp_path, 0.01)
    assert stopped["error"]["reference"] == "timeout" and stopped["exit_code"] == 3


def test_the_commands_refuse_bad_input_with_one_line_and_exit_2(cli, tmp_path):
    typo = cli("mcp", "tools", "--allow", "mailroom.stauts")
    assert typo.exit_code == 2 and "--allow 'mailroom.stauts' matches no capability" in typo.stderr
    missing = cli("mcp", "serve", "--root", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "nowhere" in missing.stderr and "Traceback" not in missing.stderr
    listed = cli("mcp", "tools", "--json", "--allow", "gaps.*", "--allow", "gaps_close")
    assert listed.exit_code == 0
    assert {t["name"] for t in listed.json()["tools"]} == {"gaps_file", "gaps_list", "gaps_close"}


def test_the_runners_safety_flags_as_cap_show_lists_them_become_execute_dry_run_and_confirm():
    # The form `cap show --json` gives the runner's own flags (type "flag"): the schema follows it.
    spec = load_registry().get("sieve.apply")
    flags = [{"name": n, "flags": [f], "type": "flag", "multiple": False, "required": False, "default": False,
              "help": f"the runner's {f}"} for n, f in (("execute", "--execute"), ("dry_run", "--dry-run"),
                                                         ("yes", "--yes"))]  # fmt: skip
    made = make_tool(spec, flags)
    props = made.input_schema["properties"]
    assert {k: v["type"] for k, v in props.items()} == {"execute": "boolean", "dry_run": "boolean",
                                                        "confirm": "boolean"}  # fmt: skip
    assert command_arguments(made, {"execute": True, "confirm": True}) == ["--execute", "--yes"]
    assert command_arguments(made, {"dry_run": True}) == ["--dry-run"]


def _mcp_contract(tmp_path, text: str):
    (tmp_path / "bindings").mkdir(exist_ok=True)
    (tmp_path / "bindings" / "communications.mcp.contract.yaml").write_text(text)
    return str(tmp_path)


def test_the_mcp_contract_bounds_the_tools_and_the_command_line_only_narrows(cli, tmp_path):
    root = _mcp_contract(tmp_path, 'version: 1\nmcp:\n  allow: ["communications.*", gaps_close]\n'
                                   "  deny: [communications.draft.send]\n")  # fmt: skip
    names = lambda done: {t["name"] for t in done.json()["tools"]}  # noqa: E731
    bounded = cli("mcp", "tools", "--root", root, "--json")
    assert bounded.exit_code == 0, bounded.stderr
    got = names(bounded)
    assert "communications_mail_draft" in got and "gaps_close" in got  # destructive: named exactly in the contract
    assert "communications_draft_send" not in got and not any(n.startswith(("calendar_", "gaps_l")) for n in got)
    narrowed = names(cli("mcp", "tools", "--root", root, "--json", "--allow", "communications.mail.*", "--deny",
                         "*send"))  # fmt: skip
    assert narrowed == {"communications_mail_search", "communications_mail_draft"}
    # The command line cannot widen the contract: what it denies is not there to allow.
    widen = cli("mcp", "tools", "--root", root, "--json", "--allow", "communications.draft.*")
    assert widen.exit_code == 2 and "--allow 'communications.draft.*' matches no capability" in widen.stderr


def test_an_invalid_mcp_contract_is_exit_2_with_file_and_line(cli, tmp_path):
    root = _mcp_contract(tmp_path, "version: 1\nmcp:\n  alow: [x]\n  deny: ['a b']\n")
    done = cli("mcp", "tools", "--root", root)
    assert done.exit_code == 2 and "communications.mcp.contract.yaml:3" in done.stderr and "allow" in done.stderr
    assert "Traceback" not in done.stderr
    root = _mcp_contract(tmp_path, "version: 1\nmcp:\n  deny: [calendar.nothing]\n")
    done = cli("mcp", "tools", "--root", root)
    assert done.exit_code == 2 and "communications.mcp.contract.yaml: deny 'calendar.nothing' matches no" in done.stderr
