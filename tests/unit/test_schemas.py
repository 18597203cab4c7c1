"""The quick schema check: never a yes the JSON Schema validator would refuse."""

from __future__ import annotations

import random
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from journeyman.domain.schemas import quick_check

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "required": ["plan", "email"], "properties": {"plan": {"type": "string"}}},
    {
        "type": "object",
        "properties": {
            "total": {"type": "number", "minimum": 0, "maximum": 100},
            "count": {"type": "integer", "minimum": 1},
            "sku": {"type": "string", "minLength": 2, "maxLength": 4},
            "tier": {"enum": ["gold", "silver"]},
            "gift": {"type": ["boolean", "null"]},
            "items": {"type": "array"},
            "meta": {"type": "object", "description": "anything"},
            "free": {},
        },
        "additionalProperties": False,
    },
    {"required": ["a"], "title": "no type named"},
]
VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 2.5, 101, 10**20, "", "a", "ab", "abcde", "gold",
    "bronze", [], [1], {}, {"a": 1},
]  # fmt: skip


@pytest.mark.parametrize("schema", SCHEMAS)
def test_a_quick_yes_is_always_a_yes_of_the_validator(schema: dict[str, Any]) -> None:
    quick = quick_check(schema)
    assert quick is not None
    validator = Draft202012Validator(schema)
    chance = random.Random(7)
    keys = [*schema.get("properties", {}), *schema.get("required", []), "other"]
    yes = no = 0
    for _ in range(3000):
        properties = {key: chance.choice(VALUES) for key in keys if chance.random() < 0.4}
        if quick(properties):
            yes += 1
            assert validator.is_valid(properties), properties
        else:
            no += 1
    assert yes > 50  # both answers were tried, many times
    assert no > 50


def test_common_valid_events_get_a_quick_yes() -> None:
    quick = quick_check(SCHEMAS[1])
    assert quick is not None
    assert quick({"total": 12.5, "count": 3, "sku": "AB1", "tier": "gold", "gift": None})
    assert not quick({"total": 12.5, "extra": 1})  # additionalProperties: False
    assert not quick({"count": 1.0})  # an integer to JSON Schema: the validator decides


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"pattern": "^x"}}},
        {"type": "object", "properties": {"a": {"type": "object", "properties": {}}}},
        {"type": "object", "properties": {"a": {"enum": [1, True]}}},
        {"type": "object", "allOf": [{"required": ["a"]}]},
        {"type": "array"},
        {"type": "object", "additionalProperties": {"type": "string"}},
    ],
)
def test_other_schemas_have_no_quick_check(schema: dict[str, Any]) -> None:
    assert quick_check(schema) is None
