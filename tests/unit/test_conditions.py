from __future__ import annotations

import json
from typing import Any

import pytest

from pudimd.conditions import Condition, ConditionError, judge
from pudimd.results import ProbeResult

DOC = {
    "data": {"status": "UP", "items": [{"name": "a"}, {"name": "b"}], "empty": []},
    "version": "1.0",
    "count": 3,
    "ok": True,
    "nothing": None,
}


def result(**kwargs: Any) -> ProbeResult:
    values = {
        "BODY": json.dumps(DOC).encode(),
        "IP": "127.0.0.1",
        "CONNECTED": True,
        "CERTIFICATE_EXPIRATION": 72 * 3600.0,
        "DNS_RCODE": "NOERROR",
        "HEADERS": {"content-type": "application/json"},
    }
    values.update(kwargs.pop("values", {}))
    base: dict[str, Any] = {
        "success": True,
        "duration": 0.25,
        "status": 200,
        "metrics": {"content_length": 120.0},
        "values": values,
    }
    base.update(kwargs)
    return ProbeResult(**base)


def holds(text: str, res: ProbeResult | None = None) -> bool:
    return Condition(text).evaluate(res or result())[0]


@pytest.mark.parametrize(
    "text",
    [
        "[STATUS] == 200",
        "[STATUS] != 404",
        "[STATUS] < 300",
        "[STATUS] <= 200",
        "[STATUS] >= 200",
        "200 == [STATUS]",
        '[STATUS] == "200"',
        "[RESPONSE_TIME] < 300",
        "[RESPONSE_TIME] > 249",
        "[RESPONSE_TIME] < 1s",
        "[RESPONSE_TIME] > 200ms",
        "[BODY].data.status == UP",
        "[BODY].data.status == 'UP'",
        "[BODY].data.items[1].name == b",
        "[BODY].data.items[-1].name == b",
        "[BODY].version == 1.0",
        "[BODY].count == 3",
        "[BODY].count > 2.5",
        "[BODY].ok == true",
        "[BODY].nothing == null",
        "len([BODY].data.items) == 2",
        "len([BODY].data.empty) == 0",
        "len([BODY].data.status) == 2",
        "has([BODY].data.status) == true",
        "has([BODY].data.missing) == false",
        "[BODY] == pat(*\"UP\"*)",
        "[BODY] == pat('*UP*')",
        "[BODY].data.status == pat(U*)",
        "[BODY].data.status != pat(D*)",
        "[CERTIFICATE_EXPIRATION] > 48h",
        "[CERTIFICATE_EXPIRATION] < 4d",
        "[CERTIFICATE_EXPIRATION] > 3600",
        "[DNS_RCODE] == NOERROR",
        "[CONNECTED] == true",
        "[IP] == 127.0.0.1",
        "[HEADERS].content-type == pat(application/json*)",
        "[CONTENT_LENGTH] == 120",
        "[STATUS] == any(200, 204)",
        "[BODY].data.status == any(UP, OK)",
        "[BODY].data.status == any(pat(DOWN*), pat(U*))",
        "any([STATUS] == 500, [BODY].data.status == UP)",
        "any([STATUS] == 500, any([STATUS] == 404, [STATUS] == 200))",
        "[STATUS]==200",
        "  [STATUS]   ==   200  ",
        "[BODY].data.items[0].name == a",
    ],
)
def test_condition_holds(text: str) -> None:
    assert holds(text), text


@pytest.mark.parametrize(
    "text",
    [
        "[STATUS] == 404",
        "[STATUS] > 200",
        "[RESPONSE_TIME] > 300",
        "[RESPONSE_TIME] < 200ms",
        "[BODY].data.status == DOWN",
        "[BODY].data.items[5].name == a",
        "len([BODY].data.items) > 2",
        "[BODY] == pat(*DOWN*)",
        "[CERTIFICATE_EXPIRATION] > 7d",
        "[CONNECTED] == false",
        "[CONNECTED] == 1",
        "[STATUS] == any(201, 204)",
        "any([STATUS] == 500, [STATUS] == 404)",
        "[BODY].data.status > 3",
    ],
)
def test_condition_does_not_hold(text: str) -> None:
    assert not holds(text), text


def test_missing_values_never_hold_whatever_the_operator() -> None:
    for text in (
        "[NOT_THERE] == 1",
        "[NOT_THERE] != 1",
        "[BODY].data.nope != x",
        "[BODY].data.status.deeper == UP",
        "len([BODY].nope) == 0",
        "[BODY].count[0] == 3",
    ):
        assert not holds(text), text
    ok, why = Condition("[BODY].data.nope != x").evaluate(result())
    assert (ok, why) == (False, "[BODY].data.nope (missing) != x")


def test_a_body_that_is_not_json_has_no_paths_but_is_text() -> None:
    res = result(values={"BODY": b"<html>healthy</html>"})
    assert not holds("[BODY].status == UP", res)
    assert holds("has([BODY].status) == false", res)
    assert holds("[BODY] == pat(*healthy*)", res)
    assert holds("len([BODY]) == 20", res)


def test_body_may_be_text_and_bytes_are_decoded_as_utf8() -> None:
    assert holds("[BODY] == pat(*café*)", result(values={"BODY": "un café"}))
    assert holds("[BODY] == pat(*café*)", result(values={"BODY": "un café".encode()}))


def test_a_json_array_body_is_indexed_at_the_top() -> None:
    res = result(values={"BODY": b'[{"id": 7}, {"id": 8}]'})
    assert holds("[BODY][1].id == 8", res)
    assert holds("len([BODY][1]) == 1", res)
    assert holds("len([BODY]) == 22", res), "the body itself counts as text"


def test_pat_matches_the_whole_text_with_star_only() -> None:
    res = result(values={"BODY": "a.c"})
    assert holds("[BODY] == pat(a.c)", res)
    assert not holds("[BODY] == pat(a)", res)
    assert holds("[BODY] == pat(a*)", res)
    assert not holds("[BODY] == pat(a?c)", res), "? is literal, as in Gatus"
    assert not holds("[BODY] == pat(abc)", res), ". is literal"


def test_durations_take_the_unit_of_the_placeholder() -> None:
    fast = result(duration=0.4)
    assert holds("[RESPONSE_TIME] == 400", fast)
    assert holds("[RESPONSE_TIME] < 500ms", fast)
    assert holds("[RESPONSE_TIME] > 0.3s", fast)
    assert not holds("[RESPONSE_TIME] > 1m", fast)
    assert holds("[CERTIFICATE_EXPIRATION] == 3d", result())
    assert holds("[CERTIFICATE_EXPIRATION] == 259200", result())


def test_explanation_shows_each_value_seen() -> None:
    res = result(status=404, duration=0.9124)
    assert Condition("[STATUS] == 200").evaluate(res) == (False, "[STATUS] (404) == 200")
    assert Condition("[RESPONSE_TIME] > 800").evaluate(res) == (
        True,
        "[RESPONSE_TIME] (912.4) > 800",
    )
    assert Condition("len([BODY].data.items) > 5").evaluate(res)[1] == (
        "len([BODY].data.items) (2) > 5"
    )
    assert Condition("any([STATUS] == 200, [IP] == ::1)").evaluate(res)[1] == (
        "any([STATUS] (404) == 200, [IP] (127.0.0.1) == ::1)"
    )
    assert Condition("[STATUS] == any(200, 204)").evaluate(res)[1] == (
        "[STATUS] (404) == any(200, 204)"
    )


def test_long_values_are_shortened_on_one_line() -> None:
    res = result(values={"BODY": b"line one\n" + b"x" * 200})
    why = Condition("[BODY] == pat(*ok*)").evaluate(res)[1]
    assert why.startswith("[BODY] (line one\\nxxx") and "...) == pat(*ok*)" in why
    assert len(why) < 100


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("", "expected a value", 1),
        ("[STATUS] = 200", "expected an operator (==, !=, <, <=, >, >=)", 10),
        ("[STATUS] 200", "expected an operator", 10),
        ("[STATUS] ==", "expected a value", 12),
        ("[status] == 200", "expected a placeholder name in capitals", 2),
        ("[STATUS == 200", "expected a placeholder name in capitals", 2),
        ("[BODY]. == 1", "expected a key after '.'", 8),
        ("[BODY].items[x] == 1", "expected an index such as [0]", 14),
        ("[STATUS] == 200 OK", "unexpected 'OK': expected the end of the condition", 17),
        ('[BODY] == "open', "unterminated string", 11),
        ("[BODY] == pat(*a*", "expected ')' closing pat(", 18),
        ("[BODY] == pat()", "expected a pattern", 15),
        ("[STATUS] < any(1, 2)", "pat() and any() compare with == or !=, not <", 10),
        ("pat(*a*) == [BODY]", "pat() and any() go on the right of == or !=", 1),
        ("len(200) > 1", "len() takes a placeholder", 5),
        ("has(x) == true", "has() takes a placeholder", 5),
        ("size([BODY]) > 1", "unknown function 'size'", 1),
        ("any([STATUS] == 200, [STATUS] == 204", "expected ',' or ')' closing any(", 37),
        ("[STATUS] == any(200, 204", "expected ',' or ')' closing any(", 25),
        ("] == 1", "unexpected ']'", 1),
    ],
)
def test_parse_errors_say_what_was_expected_and_where(
    text: str, message: str, position: int
) -> None:
    with pytest.raises(ConditionError) as info:
        Condition(text)
    assert message in info.value.message
    assert info.value.position == position
    assert str(info.value).endswith(f" at position {position}")
    assert isinstance(info.value, ValueError)


def test_conditions_compare_by_text() -> None:
    assert Condition("[STATUS] == 200") == Condition(" [STATUS] == 200 ")
    assert Condition("[STATUS] == 200") != Condition("[STATUS] == 201")
    assert len({Condition("[STATUS] == 200"), Condition("[STATUS] == 200")}) == 1


def test_judge_fails_on_the_first_failed_condition_with_its_value() -> None:
    res = result(status=404)
    judge(res, [Condition("[CONNECTED] == true"), Condition("[STATUS] == 200")], [])
    assert res.success is False
    assert res.message == "condition [STATUS] (404) == 200 failed"
    assert res.condition == "[STATUS] == 200"


def test_judge_marks_degraded_when_a_degraded_if_condition_holds() -> None:
    res = result(duration=0.9, message="probe said hi")
    judge(res, [Condition("[STATUS] == 200")], [Condition("[RESPONSE_TIME] > 800")])
    assert res.success is True and res.degraded is True
    assert res.message == "degraded: [RESPONSE_TIME] (900) > 800; probe said hi"
    assert res.condition == "[RESPONSE_TIME] > 800"


def test_judge_leaves_a_healthy_result_alone() -> None:
    res = result()
    judge(res, [Condition("[STATUS] == 200")], [Condition("[RESPONSE_TIME] > 800")])
    assert (res.success, res.degraded, res.message, res.condition) == (True, False, "", None)


def test_body_is_parsed_once_per_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import pudimd.conditions._tree as tree

    calls: list[object] = []
    real = tree.json.loads

    def counting(data: Any) -> Any:
        calls.append(data)
        return real(data)

    monkeypatch.setattr(tree.json, "loads", counting)
    conditions = [Condition("[BODY].data.status == UP"), Condition("len([BODY].data.items) > 1")]
    judge(result(), conditions, [Condition("[BODY].count > 100")])
    assert len(calls) == 1
    judge(result(), [Condition("[STATUS] == 200")], [])
    assert len(calls) == 1, "no condition reads the body: it is not parsed"
