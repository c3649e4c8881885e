"""The contract's captcha request parameters: validated, then ignored.

flowgate calls official APIs, which have no reCAPTCHA, so it never solves a
captcha (DESIGN §1.1). Clients written for the hosted service still send
``captchaToken`` / ``captchaRetry`` / ``captchaOrder``; flowgate checks them
exactly as the contract states (types, ranges, mutual exclusion) so a request
that the hosted service would refuse is refused here too, and otherwise drops
them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flowgate.domain.errors import InvalidRequest

CAPTCHA_FIELDS: tuple[str, ...] = ("captchaToken", "captchaRetry", "captchaOrder")
"""The request parameters this module validates."""

CAPTCHA_PROVIDERS: tuple[str, ...] = (
    "CapSolver",
    "AntiCaptcha",
    "YesCaptcha",
    "CapMonster",
    "SolveCaptcha",
    "2Captcha",
    "EzCaptcha",
)
"""Provider names the contract knows (seed 000 / 004 ``captcha.service`` values)."""

CAPTCHA_RETRY_MIN = 1
CAPTCHA_RETRY_MAX = 10
CAPTCHA_ORDER_MAX_ENTRIES = 10
CAPTCHA_TOKEN_MAX_LENGTH = 10_000

_PROVIDERS_BY_LOWER = {name.lower(): name for name in CAPTCHA_PROVIDERS}
_FORM_INTEGER = re.compile(r"^[+-]?[0-9]+$")


def _is_absent(value: Any, form: bool) -> bool:
    # A multipart form cannot send "no value" other than an empty field.
    return value is None or (form and value == "")


def _check_retry(value: Any, form: bool) -> None:
    rule = (
        f"captchaRetry must be an integer from {CAPTCHA_RETRY_MIN} to {CAPTCHA_RETRY_MAX} "
        "(default 3)"
    )
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif form and isinstance(value, str) and _FORM_INTEGER.match(value.strip()):
        number = int(value.strip())
    if number is None:
        raise InvalidRequest(f"{rule}; got {value!r}")
    if not CAPTCHA_RETRY_MIN <= number <= CAPTCHA_RETRY_MAX:
        raise InvalidRequest(f"{rule}; got {number}")


def _check_order(value: Any) -> None:
    example = "e.g. 'EzCaptcha,EzCaptcha,CapSolver'"
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(
            f"captchaOrder must be a comma-separated string of provider names, {example}"
        )
    entries = [entry.strip() for entry in value.split(",")]
    if any(not entry for entry in entries):
        raise InvalidRequest(
            f"captchaOrder has an empty entry; send provider names only, {example}"
        )
    if len(entries) > CAPTCHA_ORDER_MAX_ENTRIES:
        raise InvalidRequest(
            f"captchaOrder has {len(entries)} entries; at most {CAPTCHA_ORDER_MAX_ENTRIES} "
            "are allowed"
        )
    unknown = [entry for entry in entries if entry.lower() not in _PROVIDERS_BY_LOWER]
    if unknown:
        raise InvalidRequest(
            f"captchaOrder names unknown provider(s): {', '.join(unknown)}; "
            f"known providers: {', '.join(CAPTCHA_PROVIDERS)}"
        )


def _check_token(value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("captchaToken must be a non-empty string")
    if len(value) > CAPTCHA_TOKEN_MAX_LENGTH:
        raise InvalidRequest(
            f"captchaToken is {len(value)} characters long; at most "
            f"{CAPTCHA_TOKEN_MAX_LENGTH} are allowed"
        )


def validate_captcha_fields(data: Mapping[str, Any], *, form: bool = False) -> None:
    """Check ``captchaToken``, ``captchaRetry`` and ``captchaOrder`` of a request body.

    ``captchaRetry`` is an integer 1-10, ``captchaOrder`` at most 10
    comma-separated known provider names (matched case-insensitively),
    ``captchaToken`` a non-empty string; at most one of the three may be
    sent. ``form=True`` means ``data`` holds multipart form fields (strings):
    then ``"3"`` is a valid ``captchaRetry`` and an empty field counts as
    absent. ``None`` always counts as absent. Raises :class:`InvalidRequest`
    naming the field and the rule; returns nothing because flowgate ignores
    the values (it solves no captchas).
    """
    present = [name for name in CAPTCHA_FIELDS if not _is_absent(data.get(name), form)]
    if len(present) > 1:
        raise InvalidRequest(
            f"{' and '.join(present)} are mutually exclusive: send at most one of "
            f"{', '.join(CAPTCHA_FIELDS)} (flowgate validates and then ignores them)"
        )
    if "captchaRetry" in present:
        _check_retry(data["captchaRetry"], form)
    if "captchaOrder" in present:
        _check_order(data["captchaOrder"])
    if "captchaToken" in present:
        _check_token(data["captchaToken"])
