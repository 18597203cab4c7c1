"""A quick yes for the event schemas most workspaces write.

Most event schemas are an object with required keys and typed properties, maybe with an
enum or a length or range bound. :func:`quick_check` compiles such a schema into a plain
function that answers True when the properties certainly conform. It never answers True
for properties the JSON Schema validator would refuse; when it answers False (or the
schema uses anything else, and there is no quick check), the validator decides and
names the field and the rule. Valid events, nearly all of them, skip the validator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["quick_check"]

Check = Callable[[Any], bool]

# Keywords that never make an instance invalid.
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "default", "format"}
)
_OBJECT_KEYWORDS = _ANNOTATIONS | {"type", "required", "properties", "additionalProperties"}
_VALUE_KEYWORDS = _ANNOTATIONS | {"type", "enum", "minLength", "maxLength", "minimum", "maximum"}


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


# The certain cases only: 1.0 is an integer to JSON Schema, but here it takes the validator.
_TYPES: dict[str, Check] = {
    "string": lambda v: type(v) is str,
    "integer": lambda v: type(v) is int,
    "number": _is_number,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "array": lambda v: type(v) is list,
    "object": lambda v: type(v) is dict,
}


def quick_check(schema: Mapping[str, Any]) -> Check | None:
    """A function that says True only for properties ``schema`` accepts, or None."""
    if not isinstance(schema, Mapping) or not set(schema) <= _OBJECT_KEYWORDS:
        return None
    if schema.get("type", "object") != "object":
        return None
    required = schema.get("required", [])
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
        return None
    if not isinstance(properties, Mapping) or not isinstance(extra, bool):
        return None
    checks: dict[str, Check] = {}
    for name, part in properties.items():
        check = _value_check(part)
        if check is None:
            return None
        checks[name] = check
    needed = tuple(required)
    items = tuple(checks.items())
    known = frozenset(checks)

    def accepts(value: Any) -> bool:
        if type(value) is not dict:
            return False
        for key in needed:
            if key not in value:
                return False
        for key, check in items:
            if key in value and not check(value[key]):
                return False
        return extra or known.issuperset(value)

    return accepts


def _value_check(schema: Any) -> Check | None:
    if schema is True or (isinstance(schema, Mapping) and not set(schema) - _ANNOTATIONS):
        return lambda v: True
    if not isinstance(schema, Mapping) or not set(schema) <= _VALUE_KEYWORDS:
        return None
    checks: list[Check] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not names or not all(isinstance(n, str) and n in _TYPES for n in names):
            return None
        kinds = [_TYPES[n] for n in names]
        checks.append(lambda v: any(kind(v) for kind in kinds))
    if "enum" in schema:
        options = schema["enum"]
        # Strings only: JSON Schema's equality of numbers and booleans differs from Python's.
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            return None
        allowed = frozenset(options)
        checks.append(lambda v: type(v) is str and v in allowed)
    bounds = _bounds(schema)
    if bounds is None:
        return None
    checks.extend(bounds)
    return lambda v: all(check(v) for check in checks)


def _bounds(schema: Mapping[str, Any]) -> list[Check] | None:
    checks: list[Check] = []
    for key, make in _BOUNDS.items():
        if key in schema:
            check = make(schema[key])
            if check is None:
                return None
            checks.append(check)
    return checks


def _min_length(limit: Any) -> Check | None:
    if type(limit) is not int:
        return None
    return lambda v: type(v) is not str or len(v) >= limit


def _max_length(limit: Any) -> Check | None:
    if type(limit) is not int:
        return None
    return lambda v: type(v) is not str or len(v) <= limit


def _minimum(limit: Any) -> Check | None:
    if not _is_number(limit):
        return None
    return lambda v: not _is_number(v) or v >= limit


def _maximum(limit: Any) -> Check | None:
    if not _is_number(limit):
        return None
    return lambda v: not _is_number(v) or v <= limit


_BOUNDS: dict[str, Callable[[Any], Check | None]] = {
    "minLength": _min_length,
    "maxLength": _max_length,
    "minimum": _minimum,
    "maximum": _maximum,
}
