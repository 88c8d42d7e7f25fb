"""Editing a state file changes only the lines that must change."""

from __future__ import annotations

import pytest

from reconciler import yamledit
from reconciler.yamlio import parse

ORDER = ["id", "name", "instance", "rate-limit", "integrations"]


@pytest.mark.parametrize(
    ("text", "data", "expected"),
    [
        pytest.param(
            "id: t\n# who pays\nname: 'Styled Co'  # the brand\nrate-limit: 5\n",
            {"id": "t", "name": "Styled Inc", "rate-limit": 5},
            "id: t\n# who pays\nname: 'Styled Inc' # the brand\nrate-limit: 5\n",
            id="single quotes and comments stay",
        ),
        pytest.param(
            'id: t\nname: "Acme"\n',
            {"id": "t", "name": "Acme Corp"},
            'id: t\nname: "Acme Corp"\n',
            id="double quotes stay",
        ),
        pytest.param(
            "id: t\nname: Plain Name\n",
            {"id": "t", "name": "Other Name"},
            "id: t\nname: Other Name\n",
            id="a plain value stays plain when it reads back",
        ),
        pytest.param(
            "id: t\nname: Plain Name\n",
            {"id": "t", "name": "no"},
            'id: t\nname: "no"\n',
            id="a plain value YAML 1.1 would misread is quoted",
        ),
        pytest.param(
            "id: t\nname: Plain Name\n",
            {"id": "t", "name": "Plain #1"},
            'id: t\nname: "Plain #1"\n',
            id="a plain value that would read as a comment is quoted",
        ),
        pytest.param(
            "rate-limit: 5\nid: t\nname: N\n",
            {"rate-limit": 5, "id": "t", "name": "N", "instance": "IN1"},
            "instance: IN1\nrate-limit: 5\nid: t\nname: N\n",
            id="a person's key order stays; a new key goes before its schema's next",
        ),
        pytest.param(
            "id: t\nname: N\n",
            {"id": "t", "name": "N", "integrations": ["echo", "pusher"]},
            "id: t\nname: N\nintegrations:\n  - echo\n  - pusher\n",
            id="a new list is written as new files write lists",
        ),
        pytest.param(
            "id: t\nname: N\nintegrations:\n- echo  # first\n",
            {"id": "t", "name": "N", "integrations": ["echo", "pusher"]},
            "id: t\nname: N\nintegrations:\n- echo  # first\n- pusher\n",
            id="an existing list keeps its indent and comments",
        ),
        pytest.param(
            "id: t\nname: N\nrate-limit: 5  # agreed\ninstance: IN1\n",
            {"id": "t", "name": "N", "instance": "IN1"},
            "id: t\nname: N\ninstance: IN1\n",
            id="a removed key goes with its own comment",
        ),
        pytest.param(
            "id: t\nname: N\ntenants: [acme,   globex]  # both\nrate-limit:   5\n",
            {"id": "t", "name": "M", "tenants": ["acme", "globex"], "rate-limit": 5},
            "id: t\nname: M\ntenants: [acme,   globex]  # both\nrate-limit:   5\n",
            id="fields not changed keep their lines exactly",
        ),
        pytest.param(
            "id: t\nname: N\n# the secrets\nintegration-params:\n  pusher:\n"
            "    key: k\n# Owner: ops, OPS-42\n",
            {"id": "t", "name": "N"},
            "id: t\nname: N\n# the secrets\n# Owner: ops, OPS-42\n",
            id="a comment after a removed nested value stays",
        ),
        pytest.param(
            "id: t\nintegrations:\n  - echo\nrate-limit: 5\n# end comment\n",
            {"id": "t", "integrations": ["echo"]},
            "id: t\nintegrations:\n  - echo\n# end comment\n",
            id="a comment after a field removed after a list stays after the list",
        ),
        pytest.param(
            "id: t\nstats:\n  type: g\n  port: 1\napi: a\n# about events\nevents: e\n",
            {"id": "t", "stats": {"type": "g", "port": 2}, "events": "e"},
            "id: t\nstats:\n  type: g\n  port: 2\n# about events\nevents: e\n",
            id="a comment stays in place when the map before it changes",
        ),
        pytest.param(
            "id: t\nname: N",
            {"id": "t", "name": "N", "instance": "IN1"},
            "id: t\nname: N\ninstance: IN1\n",
            id="a file without a final line end",
        ),
    ],
)
def test_an_edit_keeps_what_a_person_wrote(text, data, expected):
    result = yamledit.edited(text, data, ORDER)
    assert result == expected
    assert parse(result).data == data


def test_a_file_with_crlf_line_ends_keeps_them():
    text = "id: t\r\nname: A  # the name\r\nintegrations:\r\n- a\r\n"
    data = {"id": "t", "name": "B", "integrations": ["a", "b"]}
    result = yamledit.edited(text, data, ORDER)
    assert result == "id: t\r\nname: B  # the name\r\nintegrations:\r\n- a\r\n- b\r\n"


def test_a_value_that_would_not_read_back_is_refused():
    with pytest.raises(yamledit.Unstorable):
        yamledit.edited("id: t\nname: N\n", {"id": "t", "name": "\ud800"}, ORDER)


def test_a_file_that_is_not_a_mapping_cannot_be_edited():
    with pytest.raises(yamledit.EditError, match="mapping"):
        yamledit.edited("- a\n- b\n", {"id": "t"}, ORDER)


def test_a_file_the_editor_cannot_read_is_refused_without_quoting_it():
    text = 'id: t\nintegration-params:\n  pusher:\n    secret:\t"TAB-SECRET-1"\n'
    with pytest.raises(yamledit.EditError) as refused:
        yamledit.edited(text, {"id": "t"}, ORDER)
    assert "line 4" in str(refused.value)
    assert "TAB-SECRET" not in str(refused.value)
