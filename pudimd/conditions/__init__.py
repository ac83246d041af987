"""Gatus-style conditions on check results: ``[STATUS] == 200``, ``[RESPONSE_TIME] < 300``,
``[BODY].data.status == UP``, ``[BODY] == pat(*healthy*)``, ``len([BODY].items) > 0``,
``[CERTIFICATE_EXPIRATION] > 48h``, ``any([STATUS] == 200, [STATUS] == 204)``...

Each condition is parsed once, when the config is loaded, into a small tree that is
evaluated on every result; nothing is ever passed to ``eval``.  The language is described
for users in ``docs/conditions.md``:

- placeholders: ``[STATUS]`` (``result.status``), ``[RESPONSE_TIME]`` (``result.duration``
  in milliseconds), any key of ``result.values`` (``[BODY]``, ``[IP]``, ``[CONNECTED]``,
  ``[CERTIFICATE_EXPIRATION]``, ``[DNS_RCODE]``...), else a key of ``result.metrics`` in
  lower case (``[CONTENT_LENGTH]`` reads ``metrics["content_length"]``);
- paths into JSON bodies and into mappings and lists: ``[BODY].data.items[0].name``,
  ``[BODY][-1]``;
- operators ``==  !=  <  <=  >  >=``; functions ``len(x)``, ``has(x)``, ``pat(glob)``,
  ``any(v1, v2...)`` on the right of ``==``/``!=``, and ``any(cond, cond...)`` as a whole
  condition;
- literals: numbers, ``"quoted"`` or bare texts, ``true``, ``false``, ``null``, durations
  (``48h``, ``500ms``) in the unit of the placeholder they are compared with
  (milliseconds for ``[RESPONSE_TIME]``, seconds for everything else).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pudimd.conditions._lexer import ConditionError
from pudimd.conditions._parser import UNITS, parse
from pudimd.conditions._tree import Facts

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema

    from pudimd.results import ProbeResult

__all__ = ["UNITS", "Condition", "ConditionError", "judge"]


class Condition:
    """One parsed condition.  ``Condition(text)`` raises :class:`ConditionError` (a
    ValueError) naming what was expected and where; equal texts are equal conditions."""

    __slots__ = ("_test", "text")

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self._test = parse(self.text)

    def evaluate(self, result: ProbeResult) -> tuple[bool, str]:
        """Whether the condition holds for ``result``, and the condition with the values
        seen, e.g. ``[STATUS] (404) == 200``."""
        facts = Facts(result)
        return self._test.holds(facts), self._test.describe(facts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    @classmethod
    def _validate(cls, value: Any) -> Condition:
        if isinstance(value, Condition):
            return value
        if not isinstance(value, str):
            raise ValueError("expected a condition as text, e.g. '[STATUS] == 200'")
        return cls(value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls._validate, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "description": "A condition such as [STATUS] == 200 (see docs/conditions.md)",
        }


def judge(
    result: ProbeResult, conditions: Sequence[Condition], degraded_if: Sequence[Condition]
) -> None:
    """Apply a target's conditions to its successful ``result``, in place.

    The first of ``conditions`` that does not hold makes the result a failure whose message
    names it with the value seen (``condition [STATUS] (404) == 200 failed``); otherwise
    the first of ``degraded_if`` that holds makes it degraded (``degraded: [RESPONSE_TIME]
    (912) > 800``, before the probe's own message, if any).  ``result.condition`` records
    the condition's text.  The body is parsed once for all of them.
    """
    facts = Facts(result)
    for condition in conditions:
        test = condition._test
        if not test.holds(facts):
            result.success = False
            result.degraded = False
            result.message = f"condition {test.describe(facts)} failed"
            result.condition = condition.text
            return
    if result.degraded:
        return
    for condition in degraded_if:
        test = condition._test
        if test.holds(facts):
            result.degraded = True
            reason = f"degraded: {test.describe(facts)}"
            result.message = f"{reason}; {result.message}" if result.message else reason
            result.condition = condition.text
            return
