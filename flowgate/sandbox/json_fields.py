"""Reading request JSON the way Google's proto JSON parser does.

Google accepts each field under its camelCase name and its snake_case proto
name (``inlineData`` / ``inline_data``); so does the sandbox.
"""

from __future__ import annotations

import re
from typing import Any

from flowgate.sandbox.google_errors import GoogleApiError, invalid_argument, unknown_field

_UPPER = re.compile(r"(?<!^)(?=[A-Z])")


def snake_name(camel: str) -> str:
    """``inlineData`` → ``inline_data``."""
    return _UPPER.sub("_", camel).lower()


def twin(obj: dict[str, Any], camel: str) -> Any:
    """The value of ``camel`` or of its snake_case twin (``None`` when neither is present)."""
    if camel in obj:
        return obj[camel]
    return obj.get(snake_name(camel))


def reject_unknown(obj: dict[str, Any], known_camel: tuple[str, ...], at: str) -> None:
    """400 for any key that is neither a known camelCase name nor its snake twin."""
    allowed = set(known_camel) | {snake_name(name) for name in known_camel}
    for name in obj:
        if name not in allowed:
            raise unknown_field(name, at)


def expect_object(value: Any, at: str) -> dict[str, Any]:
    """``value`` if it is a JSON object, else Google's 400 for a wrong type."""
    if not isinstance(value, dict):
        raise _wrong_type(at, "object", value)
    return value


def expect_list(value: Any, at: str) -> list[Any]:
    """``value`` if it is a JSON array, else a 400."""
    if not isinstance(value, list):
        raise _wrong_type(at, "list", value)
    return value


def expect_string(value: Any, at: str) -> str:
    """``value`` if it is a JSON string, else a 400."""
    if not isinstance(value, str):
        raise _wrong_type(at, "TYPE_STRING", value)
    return value


def expect_int(value: Any, at: str) -> int:
    """An integer; proto JSON also accepts integers written as strings (``"42"``)."""
    if isinstance(value, bool):
        raise _wrong_type(at, "TYPE_INT32", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise _wrong_type(at, "TYPE_INT32", value)


def _wrong_type(at: str, expected: str, value: Any) -> GoogleApiError:
    shown = repr(value) if not isinstance(value, str) else f'"{value[:60]}"'
    return invalid_argument(f"Invalid value at '{at}' ({expected}), {shown}")
