"""The config file's text edited in place: comments, order and style kept, and the
whole-file round trip used when the layout is not the usual one."""

from __future__ import annotations

from typing import Any

import pytest
import yaml_rs

from pudimd.config.yamledit import REDACTED, Document, EditError

TEXT = """\
# my config
server:
  listen: 127.0.0.1:0   # port

# the targets
targets:
  # web first
  - name: web   # the shop
    probe: echo
    target: a.example
    labels: {team: shop}
  - name: api
    probe: echo
    target: "b.example"
    interval: 30s

# alerting below
alerting:
  route:
    receiver: x   # default
"""


def data(text: str) -> Any:
    return yaml_rs.loads(text)


def test_targets_and_index() -> None:
    doc = Document(TEXT)
    assert [t["name"] for t in doc.targets()] == ["web", "api"]
    assert doc.index_of("api") == 1 and doc.index_of("nope") is None


def test_set_target_keeps_comments_quotes_and_flow_style() -> None:
    doc = Document(TEXT)
    doc.set_target(
        0, {"name": "web", "probe": "echo", "target": "c.example", "labels": {"team": "shop"}}
    )
    assert "  - name: web   # the shop\n" in doc.text
    assert "    target: c.example\n" in doc.text
    assert "    labels: {team: shop}\n" in doc.text
    assert '    target: "b.example"\n' in doc.text  # the other item untouched
    assert doc.text.replace("c.example", "a.example") == TEXT


def test_set_target_adds_and_removes_keys() -> None:
    doc = Document(TEXT)
    doc.set_target(1, {"name": "api", "probe": "echo", "target": "b.example", "timeout": "5s"})
    parsed = data(doc.text)
    assert parsed["targets"][1] == {
        "name": "api",
        "probe": "echo",
        "target": "b.example",
        "timeout": "5s",
    }
    assert "# alerting below" in doc.text and "receiver: x   # default" in doc.text


def test_redacted_value_keeps_the_secret() -> None:
    text = "targets:\n  - name: a\n    probe: echo\n    target: x\n    echo:\n      token: s3cret\n"
    doc = Document(text)
    doc.set_target(0, {"name": "a", "probe": "echo", "target": "y", "echo": {"token": REDACTED}})
    assert "token: s3cret" in doc.text and "target: y" in doc.text


def test_add_and_remove_keep_the_rest_byte_for_byte() -> None:
    doc = Document(TEXT)
    doc.add_targets([{"name": "new", "probe": "echo", "target": "yes", "labels": {"a": "007"}}])
    doc.remove_targets([0])
    parsed = data(doc.text)
    assert [t["name"] for t in parsed["targets"]] == ["api", "new"]
    assert parsed["targets"][1]["target"] == "yes"  # quoted, not a boolean
    assert parsed["targets"][1]["labels"] == {"a": "007"}
    assert doc.text.startswith("# my config\nserver:\n  listen: 127.0.0.1:0   # port\n")
    assert "\n\n# alerting below\nalerting:\n  route:\n    receiver: x   # default\n" in doc.text
    assert "# web first" not in doc.text  # a removed target's heading comment goes with it


def test_removing_every_target_leaves_an_empty_list() -> None:
    doc = Document(TEXT)
    doc.remove_targets([0, 1])
    assert data(doc.text)["targets"] == []
    doc.add_targets([{"name": "x", "probe": "echo", "target": "t"}])
    assert [t["name"] for t in data(doc.text)["targets"]] == ["x"]


def test_a_file_without_targets_gets_a_section() -> None:
    doc = Document("server:\n  listen: 127.0.0.1:0")
    doc.add_targets([{"name": "x", "probe": "echo", "target": "t"}])
    assert data(doc.text) == {
        "server": {"listen": "127.0.0.1:0"},
        "targets": [{"name": "x", "probe": "echo", "target": "t"}],
    }


def test_flow_style_targets_use_the_whole_file_round_trip() -> None:
    text = "# keep me\ntargets: [{name: a, probe: echo, target: x}]  # flow\n"
    doc = Document(text)
    doc.set_target(0, {"name": "a", "probe": "echo", "target": "y"})
    doc.add_targets([{"name": "b", "probe": "echo", "target": "z"}])
    assert "# keep me" in doc.text
    assert data(doc.text)["targets"] == [
        {"name": "a", "probe": "echo", "target": "y"},
        {"name": "b", "probe": "echo", "target": "z"},
    ]


def test_anchor_used_across_sections_falls_back() -> None:
    text = (
        "defaults: &d\n  interval: 30s\nalerting:\n  x: *d\n"
        "targets:\n  - name: a\n    probe: echo\n    target: x\n"
    )
    doc = Document(text)

    def edit(node: Any) -> None:
        node["alerting"]["y"] = 1

    doc.edit_section("alerting", edit)
    assert data(doc.text)["alerting"] == {"x": {"interval": "30s"}, "y": 1}
    assert "&d" in doc.text


def test_edit_section_in_place_and_new_section() -> None:
    doc = Document(TEXT)

    def edit(node: Any) -> None:
        node["alerting"]["route"]["receiver"] = "y"

    doc.edit_section("alerting", edit)
    assert "    receiver: y   # default\n" in doc.text
    assert doc.text.replace("receiver: y", "receiver: x") == TEXT

    def add(node: Any) -> None:
        node["oncall"] = {"users": []}

    doc.edit_section("oncall", add)
    assert data(doc.text)["oncall"] == {"users": []}


def test_not_yaml_is_an_edit_error() -> None:
    with pytest.raises(EditError):
        Document("targets: [\n").targets()
    with pytest.raises(EditError):
        Document("- a\n- b\n").targets()


def test_ten_thousand_targets_edit_in_place_quickly() -> None:
    lines = ["targets:"]
    for i in range(10_000):
        lines += [f"  - name: t{i}  # n{i}", "    probe: echo", f"    target: h{i}"]
    text = "\n".join(lines) + "\n"
    doc = Document(text)
    index = doc.index_of("t5000")
    assert index == 5000
    doc.set_target(index, {"name": "t5000", "probe": "echo", "target": "changed"})
    assert doc.text.count("\n") == text.count("\n")
    assert "  - name: t5000  # n5000\n    probe: echo\n    target: changed\n" in doc.text
    assert doc.text.replace("target: changed", "target: h5000") == text


def test_set_targets_in_one_pass_keeps_each_items_style() -> None:
    text = (
        "targets:\n"
        '  - {"name": "a", "probe": "echo", "target": "x"}\n'
        "  - name: b   # commented\n"
        "    probe: echo\n"
        "    target: y\n"
        "  - name: c\n"
        "    probe: echo\n"
        "    target: z\n"
        "    echo: {token: s3cret}\n"
        "  - name: d\n"
        "    probe: echo\n"
        "    target: w\n"
    )
    doc = Document(text)
    doc.set_targets(
        {
            0: {"name": "a", "probe": "echo", "target": "x2"},
            1: {"name": "b", "probe": "echo", "target": "y2"},
            2: {"name": "c", "probe": "echo", "target": "z2", "echo": {"token": REDACTED}},
        }
    )
    lines = doc.text.splitlines()
    assert lines[1] == '  - {"name":"a","probe":"echo","target":"x2"}'  # still one flow line
    assert lines[2] == "  - name: b   # commented" and lines[4] == "    target: y2"
    parsed = data(doc.text)
    assert parsed["targets"][2] == {
        "name": "c",
        "probe": "echo",
        "target": "z2",
        "echo": {"token": "s3cret"},  # the placeholder kept the secret
    }
    assert parsed["targets"][3] == {"name": "d", "probe": "echo", "target": "w"}
    assert doc.text.endswith("  - name: d\n    probe: echo\n    target: w\n")  # untouched
    with pytest.raises(EditError, match="secret"):
        doc.set_targets(
            {3: {"name": "d", "probe": "echo", "target": "w", "echo": {"token": REDACTED}}}
        )
