"""Label matchers: Alertmanager's matching semantics, text forms, API form and config types."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from pudimd.alerting import matchers as matchers_module
from pudimd.alerting.matchers import (
    Matcher,
    MatcherError,
    MatcherField,
    MatcherList,
    MatchType,
    format_matchers,
    from_legacy,
    matches_all,
    parse_matcher,
    parse_matchers,
)

EQ, NE, RE, NRE = MatchType.EQUAL, MatchType.NOT_EQUAL, MatchType.REGEX, MatchType.NOT_REGEX


# -- matching ----------------------------------------------------------------------------


def test_equal_matcher_matches_only_the_exact_value() -> None:
    matcher = Matcher("env", EQ, "prod")
    assert matcher.matches({"env": "prod"})
    assert not matcher.matches({"env": "production"})
    assert not matcher.matches({"env": "Prod"})
    assert not matcher.matches({"other": "prod"})


def test_not_equal_matcher_matches_any_other_value() -> None:
    matcher = Matcher("env", NE, "prod")
    assert matcher.matches({"env": "staging"})
    assert matcher.matches({})
    assert not matcher.matches({"env": "prod"})


def test_absent_label_is_the_empty_string() -> None:
    without, having = {"alertname": "X"}, {"alertname": "X", "foo": "bar"}
    assert Matcher("foo", EQ, "").matches(without)
    assert not Matcher("foo", EQ, "").matches(having)
    assert Matcher("foo", NE, "").matches(having)
    assert not Matcher("foo", NE, "").matches(without)
    assert Matcher("foo", RE, ".*").matches(without)
    assert not Matcher("foo", RE, ".+").matches(without)
    assert Matcher("foo", NRE, ".+").matches(without)


def test_regex_is_anchored_at_both_ends() -> None:
    matcher = Matcher("job", RE, "api")
    assert matcher.matches({"job": "api"})
    assert not matcher.matches({"job": "api-server"})
    assert not matcher.matches({"job": "my-api"})
    # the whole alternation is anchored, not only its first and last branch
    alternation = Matcher("job", RE, "api|db")
    assert alternation.matches({"job": "db"})
    assert not alternation.matches({"job": "apix"})
    assert not alternation.matches({"job": "xdb"})


def test_regex_does_not_match_before_a_trailing_newline() -> None:
    # Python's `$` would match before a final "\n"; Go's `$` (without m) does not
    assert not Matcher("a", RE, "foo").matches({"a": "foo\n"})


def test_not_regex_matcher_negates_the_regex() -> None:
    matcher = Matcher("severity", NRE, "crit.*|warn")
    assert matcher.matches({"severity": "info"})
    assert not matcher.matches({"severity": "critical"})
    assert not matcher.matches({"severity": "warn"})


def test_regex_leading_flag_group_applies() -> None:
    matcher = Matcher("severity", RE, "(?i)critical")
    assert matcher.matches({"severity": "CRITICAL"})
    assert matcher.matches({"severity": "Critical"})


def test_regex_character_classes_are_ascii_as_in_go() -> None:
    digits = Matcher("code", RE, r"\d+")
    assert digits.matches({"code": "503"})
    assert not digits.matches({"code": "٥٠٣"})  # Arabic-Indic digits: not \d in RE2


def test_go_end_of_text_escape_is_understood() -> None:
    assert Matcher("a", RE, r"foo\z").matches({"a": "foo"})
    # an escaped backslash followed by z is a literal backslash and z
    assert Matcher("a", RE, r"foo\\z").matches({"a": "foo\\z"})


def test_regex_answers_stay_right_when_the_result_cache_is_cleared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(matchers_module, "_RESULT_CACHE_SIZE", 2)
    matcher = Matcher("n", RE, "[0-4]")
    for round_ in range(3):
        for value in "0123456789":
            assert matcher.matches({"n": value}) == (value in "01234"), (round_, value)


def test_equality_matchers_do_not_touch_regex_machinery(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_regex(value: str) -> Any:
        raise AssertionError(f"compiled {value!r}")

    monkeypatch.setattr(matchers_module, "_compile", no_regex)
    equal, not_equal = Matcher("a", EQ, "x.*"), Matcher("a", NE, "x.*")
    assert equal.regex is None and not_equal.regex is None
    assert equal.matches({"a": "x.*"}) and not equal.matches({"a": "xyz"})
    assert not_equal.matches({"a": "xyz"})


def test_the_same_regex_is_compiled_once() -> None:
    first, second = Matcher("a", RE, "shared-[a-z]+"), Matcher("b", NRE, "shared-[a-z]+")
    assert first.regex is not None
    assert first.regex is second.regex


def test_matches_value_tests_a_bare_label_value() -> None:
    assert Matcher("receiver", RE, "team-.*").matches_value("team-db")
    assert not Matcher("receiver", RE, "team-.*").matches_value("ops")


def test_matches_all_requires_every_matcher() -> None:
    ms = [Matcher("a", EQ, "1"), Matcher("b", RE, "x.*"), Matcher("c", NE, "z")]
    assert matches_all(ms, {"a": "1", "b": "xyz", "c": "q"})
    assert not matches_all(ms, {"a": "1", "b": "xyz", "c": "z"})
    assert not matches_all(ms, {"a": "2", "b": "xyz"})


def test_matches_all_with_no_matchers_matches_everything() -> None:
    assert matches_all([], {})
    assert matches_all([], {"a": "b"})


# -- building ----------------------------------------------------------------------------


def test_constructor_accepts_operator_text() -> None:
    matcher = Matcher("a", "=~", "b")  # type: ignore[arg-type]
    assert matcher.type is RE
    assert matcher == Matcher("a", RE, "b")


def test_constructor_rejects_unknown_operator() -> None:
    with pytest.raises(MatcherError, match=r"unknown operator '==' \(expected =, !=, =~ or !~\)"):
        Matcher("a", "==", "b")  # type: ignore[arg-type]


def test_constructor_rejects_an_empty_name() -> None:
    with pytest.raises(MatcherError, match="label name must be a non-empty string"):
        Matcher("", EQ, "b")


def test_invalid_regex_error_names_the_regex_and_the_reason() -> None:
    with pytest.raises(MatcherError, match=r"invalid regex '\[x': unterminated character set"):
        Matcher("a", RE, "[x")


def test_matchers_compare_and_hash_by_value() -> None:
    same = {Matcher("a", RE, "b.*"), Matcher("a", RE, "b.*"), parse_matcher('a=~"b.*"')}
    assert len(same) == 1
    assert Matcher("a", RE, "b") != Matcher("a", NRE, "b")
    assert Matcher("a", EQ, "b") != Matcher("a", EQ, "c")


def test_matcher_is_immutable() -> None:
    matcher = Matcher("a", EQ, "b")
    with pytest.raises(AttributeError):
        matcher.value = "c"  # type: ignore[misc]


def test_matcher_survives_pickle_and_copy() -> None:
    matcher = Matcher("a", RE, "b.*")
    for clone in (pickle.loads(pickle.dumps(matcher)), copy.copy(matcher), copy.deepcopy(matcher)):
        assert clone == matcher
        assert clone.matches({"a": "bcd"}) and not clone.matches({"a": "cd"})


def test_api_flags_follow_the_operator() -> None:
    flags = {t: (Matcher("a", t, "b").is_regex, Matcher("a", t, "b").is_equal) for t in MatchType}
    assert flags == {EQ: (False, True), NE: (False, False), RE: (True, True), NRE: (True, False)}


# -- the API v2 form ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MatchType))
def test_api_form_round_trips(kind: MatchType) -> None:
    matcher = Matcher("severity", kind, "crit")
    data = matcher.to_api()
    assert data == {
        "name": "severity",
        "value": "crit",
        "isRegex": matcher.is_regex,
        "isEqual": matcher.is_equal,
    }
    assert Matcher.from_api(data) == matcher


def test_from_api_defaults_is_equal_to_true() -> None:
    assert Matcher.from_api({"name": "a", "value": "b", "isRegex": False}) == Matcher("a", EQ, "b")
    assert Matcher.from_api({"name": "a", "value": "b.*", "isRegex": True}) == Matcher(
        "a", RE, "b.*"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"value": "b", "isRegex": False}, "name must be a non-empty string"),
        ({"name": "", "value": "b", "isRegex": False}, "name must be a non-empty string"),
        ({"name": "a", "isRegex": False}, "value must be a string"),
        ({"name": "a", "value": 3, "isRegex": False}, "value must be a string"),
        ({"name": "a", "value": "b"}, "isRegex must be true or false"),
        ({"name": "a", "value": "b", "isRegex": "yes"}, "isRegex must be true or false"),
        ({"name": "a", "value": "b", "isRegex": False, "isEqual": 1}, "isEqual must be"),
        ({"name": "a", "value": "(", "isRegex": True}, "invalid regex '\\('"),
        (["a", "b"], "expected an object"),
    ],
)
def test_from_api_rejects_malformed_matchers(data: Any, reason: str) -> None:
    with pytest.raises(MatcherError, match=reason):
        Matcher.from_api(data)


# -- text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('alertname="Watchdog"', Matcher("alertname", EQ, "Watchdog")),
        ('severity=~"crit.*"', Matcher("severity", RE, "crit.*")),
        ('severity!~"info|debug"', Matcher("severity", NRE, "info|debug")),
        ("env!=prod", Matcher("env", NE, "prod")),
        ("env=prod", Matcher("env", EQ, "prod")),
        ('  env  !=  "prod"  ', Matcher("env", NE, "prod")),
        ("env = prod test ", Matcher("env", EQ, "prod test")),
        ('foo=""', Matcher("foo", EQ, "")),
        ("foo=", Matcher("foo", EQ, "")),  # Alertmanager 0.25 accepts it too
        ("foo!= ", Matcher("foo", NE, "")),
        ('{foo="bar"}', Matcher("foo", EQ, "bar")),
        ('job:rate="x"', Matcher("job:rate", EQ, "x")),
        ('"service name"="web"', Matcher("service name", EQ, "web")),
        ("tricky=~~~", Matcher("tricky", RE, "~~")),
        ("a==b", Matcher("a", EQ, "=b")),
        ('a="x, y"', Matcher("a", EQ, "x, y")),
        ("a=x,y", Matcher("a", EQ, "x,y")),
    ],
)
def test_parse_matcher_accepts_alertmanager_forms(text: str, expected: Matcher) -> None:
    assert parse_matcher(text) == expected


def test_parse_matcher_unescapes_quoted_values() -> None:
    assert parse_matcher(r'q="She said: \"Hi\""').value == 'She said: "Hi"'
    assert parse_matcher(r'q="a\\b"').value == "a\\b"
    assert parse_matcher(r'q="line\nbreak"').value == "line\nbreak"


def test_parse_matcher_keeps_other_backslashes_literal() -> None:
    # regexes need no doubled backslashes, as in Alertmanager's parser
    matcher = parse_matcher(r'code=~"\d{3}"')
    assert matcher.value == r"\d{3}"
    assert matcher.matches({"code": "503"})
    assert parse_matcher(r'path="C:\temp"').value == r"C:\temp"


def test_parse_matcher_unescapes_unquoted_values() -> None:
    assert parse_matcher(r"trickier==\\=\=\"").value == '=\\=\\="'


def test_parse_matcher_accepts_utf8_values() -> None:
    assert parse_matcher('team="ñandú 🙂"').value == "ñandú 🙂"
    assert parse_matcher("team=🙂bar").value == "🙂bar"
    assert parse_matcher('city=~"São.*"').matches({"city": "São Paulo"})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("{}", "it is empty"),
        ('="x"', "the label name is missing"),
        ('invalid-name="x"', "invalid label name 'invalid-name'"),
        ('1abc="x"', "invalid label name '1abc'"),
        ('""="x"', "the label name is empty"),
        ("env!prod", r"expected an operator \(=, !=, =~ or !~\) after the label name 'env'"),
        ("env ~ prod", "expected an operator .* found '~'"),
        ("env", "expected an operator .* found nothing"),
        ('env="prod', "unterminated quoted value"),
        ('"env=prod', "unterminated quoted label name"),
        ('env="prod"x', "unexpected 'x' after the closing quote"),
        ('env=pr"od', "unescaped double quote in the unquoted value"),
        ('sev=~"crit[al"', "invalid regex 'crit\\[al': unterminated character set"),
        ('sev=~"(?U)a"', "invalid regex"),
    ],
)
def test_parse_matcher_rejects_bad_input_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(MatcherError, match=reason) as caught:
        parse_matcher(text)
    assert repr(text) in str(caught.value)  # the message names the text


def test_parse_matcher_rejects_non_strings() -> None:
    with pytest.raises(MatcherError, match="expected a string"):
        parse_matcher(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("matcher", "text"),
    [
        (Matcher("alertname", EQ, "Watchdog"), 'alertname="Watchdog"'),
        (Matcher("sev", RE, "crit.*"), 'sev=~"crit.*"'),
        (Matcher("sev", NE, "info"), 'sev!="info"'),
        (Matcher("sev", NRE, "a|b"), 'sev!~"a|b"'),
        (Matcher("q", EQ, 'say "hi"'), 'q="say \\"hi\\""'),
        (Matcher("p", RE, r"\d+"), r'p=~"\\d+"'),
        (Matcher("m", EQ, "two\nlines"), 'm="two\\nlines"'),
        (Matcher("e", EQ, ""), 'e=""'),
        (Matcher("service name", EQ, "x"), '"service name"="x"'),
    ],
)
def test_str_renders_like_amtool(matcher: Matcher, text: str) -> None:
    assert str(matcher) == text


@pytest.mark.parametrize(
    "value",
    ["plain", 'q"uote', "back\\slash", "new\nline", "comma, brace}", "🙂 ñ", " padded ", "\\n"],
)
def test_str_parses_back_to_the_same_matcher(value: str) -> None:
    for kind in (EQ, NE):
        matcher = Matcher("label", kind, value)
        assert parse_matcher(str(matcher)) == matcher
        assert parse_matchers(format_matchers([matcher, matcher])) == [matcher, matcher]


def test_format_matchers_renders_a_braced_list() -> None:
    ms = [Matcher("a", EQ, "b"), Matcher("c", RE, "d.*")]
    assert format_matchers(ms) == '{a="b",c=~"d.*"}'
    assert format_matchers([]) == "{}"


# -- lists -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{a="b", c=~"d"}',
        'a="b",c=~"d"',
        "a=b, c=~d",
        ' { a = "b" , c =~ "d" } ',
        '{a="b", c=~"d",}',
        'a="b",c=~"d" , ',
    ],
)
def test_parse_matchers_accepts_braced_and_bare_lists(text: str) -> None:
    assert parse_matchers(text) == [Matcher("a", EQ, "b"), Matcher("c", RE, "d")]


def test_parse_matchers_does_not_split_inside_quotes() -> None:
    assert parse_matchers(r'q="x, y", e!="\", z", r=~"a,b"') == [
        Matcher("q", EQ, "x, y"),
        Matcher("e", NE, '", z'),
        Matcher("r", RE, "a,b"),
    ]


def test_parse_matchers_handles_escaped_quotes_and_commas_together() -> None:
    text = '{quote="She said: \\"Hi, ladies! That\'s gender-neutral…\\""}'
    [matcher] = parse_matchers(text)
    assert matcher.value == 'She said: "Hi, ladies! That\'s gender-neutral…"'


@pytest.mark.parametrize("text", ["", "   ", "{}", " { } "])
def test_parse_matchers_of_nothing_is_the_empty_list(text: str) -> None:
    assert parse_matchers(text) == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('a="b",,c="d"', "matcher 2 is empty"),
        (",", "matcher 1 is empty"),
        ('a="b", c!d', "invalid matcher 'c!d': expected an operator"),
        ('a="b, c=d', "unterminated quoted value"),
        ('a="b, c="d"', "unexpected 'd\"' after the closing quote"),
    ],
)
def test_parse_matchers_rejects_bad_lists_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(MatcherError, match=reason):
        parse_matchers(text)


# -- Alertmanager's deprecated match / match_re ------------------------------------------


def test_from_legacy_builds_equal_and_regex_matchers() -> None:
    ms = from_legacy({"service": "api", "env": "prod"}, {"severity": "crit.*"})
    assert ms == [
        Matcher("service", EQ, "api"),
        Matcher("env", EQ, "prod"),
        Matcher("severity", RE, "crit.*"),
    ]
    assert not matches_all(ms, {"service": "api", "env": "prod", "severity": "warning"})
    assert matches_all(ms, {"service": "api", "env": "prod", "severity": "critical"})


def test_from_legacy_of_nothing_is_empty() -> None:
    assert from_legacy(None, None) == []
    assert from_legacy({}, None) == []


@pytest.mark.parametrize(
    ("match", "match_re", "reason"),
    [
        ({"bad-name": "x"}, None, "match: invalid label name 'bad-name'"),
        (None, {"9lives": "x"}, "match_re: invalid label name '9lives'"),
        ({"a": 3}, None, "match.a: the value must be a string"),
        (None, {"sev": "(crit"}, r"match_re.sev: invalid regex '\(crit'"),
    ],
)
def test_from_legacy_rejects_invalid_entries(
    match: dict[str, Any] | None, match_re: dict[str, Any] | None, reason: str
) -> None:
    with pytest.raises(MatcherError, match=reason):
        from_legacy(match, match_re)


# -- config field types ------------------------------------------------------------------


class _Route(BaseModel):
    matcher: MatcherField | None = None
    matchers: MatcherList = []


def test_matcher_field_parses_text() -> None:
    route = _Route.model_validate({"matcher": 'severity=~"crit.*"'})
    assert route.matcher == Matcher("severity", RE, "crit.*")


def test_matcher_field_accepts_an_existing_matcher() -> None:
    matcher = Matcher("a", EQ, "b")
    assert _Route(matcher=matcher).matcher is matcher


def test_matcher_field_reports_the_reason_at_its_location() -> None:
    with pytest.raises(ValidationError) as caught:
        _Route.model_validate({"matcher": "env!prod"})
    [error] = caught.value.errors()
    assert error["loc"] == ("matcher",)
    assert "expected an operator" in error["msg"]


def test_matcher_field_rejects_non_text() -> None:
    with pytest.raises(ValidationError, match="expected a matcher such as"):
        _Route.model_validate({"matcher": 3})


def test_matcher_list_splits_items_holding_several_matchers() -> None:
    route = _Route.model_validate({"matchers": ['a="b", c=~"d"', "e!=f", Matcher("g", NRE, "h")]})
    assert route.matchers == [
        Matcher("a", EQ, "b"),
        Matcher("c", RE, "d"),
        Matcher("e", NE, "f"),
        Matcher("g", NRE, "h"),
    ]


def test_matcher_list_error_names_the_item_and_the_reason() -> None:
    with pytest.raises(ValidationError) as caught:
        _Route.model_validate({"matchers": ['a="b"', 'c=~"(d"']})
    [error] = caught.value.errors()
    assert error["loc"] == ("matchers",)
    assert "item 1:" in error["msg"] and "invalid regex '(d'" in error["msg"]


@pytest.mark.parametrize("value", ['a="b"', {"a": "b"}, [3]])
def test_matcher_list_rejects_what_is_not_a_list_of_strings(value: Any) -> None:
    with pytest.raises(ValidationError, match=r"expected a list of matchers|expected a matcher"):
        _Route.model_validate({"matchers": value})


def test_matcher_fields_serialize_as_text() -> None:
    route = _Route.model_validate({"matcher": "a=b", "matchers": ['c=~"d", e!=f']})
    assert route.model_dump() == {"matcher": 'a="b"', "matchers": ['c=~"d"', 'e!="f"']}
    assert route.model_dump_json() == (
        '{"matcher":"a=\\"b\\"","matchers":["c=~\\"d\\"","e!=\\"f\\""]}'
    )
    assert _Route.model_validate_json(route.model_dump_json()) == route


def test_matcher_fields_json_schema_describes_strings() -> None:
    properties = _Route.model_json_schema()["properties"]
    assert properties["matchers"]["type"] == "array"
    assert properties["matchers"]["items"]["type"] == "string"
    [text_form, _null] = properties["matcher"]["anyOf"]
    assert text_form["type"] == "string"
