"""Every request rule of ``POST /v1/google-flow/images`` (contract §5 C1), as pure code.

:func:`parse_image_request` turns a decoded JSON object or the fields of a
``multipart/form-data`` body into an :class:`ImageRequestSpec` with every
default applied, or raises :class:`InvalidRequest` with a message that names
the field, states the rule and says what to send instead.

What this module cannot check, because it needs storage or accounts, is left
to the service: that references exist and belong to the caller, the real
image count of each character (see :func:`check_reference_budget`), the
``email`` mismatch rule, and whether any account's upstream can honour the
request (e.g. references on imagen-4).

JSON bodies are strict about types (``"count": "2"`` is refused: JSON can say
``2``); multipart bodies can only carry text, so there ``"2"`` is a number and
an empty field means "not sent". ``null`` in JSON also means "not sent".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, overload
from urllib.parse import urlsplit

from flowgate.domain.captcha import CAPTCHA_FIELDS, validate_captcha_fields
from flowgate.domain.catalogue import (
    AUTO_ASPECT_RATIO,
    IMAGE_ASPECT_RATIOS,
    IMAGE_MODELS,
    ImageModel,
    default_image_aspect_ratio,
    default_image_model,
    normalize_image_aspect_ratio,
    resolve_image_model,
)
from flowgate.domain.errors import InvalidRequest
from flowgate.domain.ids import (
    ParsedMediaId,
    mask_email,
    media_generation_id,
    parse_media_generation_id,
)

PROMPT_MAX_LENGTH = 10_000
COUNT_MIN = 1
COUNT_MAX = 4
DEFAULT_COUNT = 4
SEED_MIN = 0
SEED_MAX = 2**31 - 1
REFERENCE_SLOTS = 10
CHARACTER_SLOTS = 7
CHARACTER_ID_MAX_LENGTH = 256
EMAIL_MAX_LENGTH = 254
REPLY_URL_MAX_LENGTH = 2048
REPLY_REF_MAX_LENGTH = 1024

_SCALAR_FIELDS: tuple[str, ...] = (
    "prompt",
    "model",
    "aspectRatio",
    "count",
    "seed",
    "email",
    "replyUrl",
    "replyRef",
    *CAPTCHA_FIELDS,
)
REFERENCE_FIELDS: tuple[str, ...] = tuple(f"reference_{n}" for n in range(1, REFERENCE_SLOTS + 1))
CHARACTER_FIELDS: tuple[str, ...] = tuple(f"character_{n}" for n in range(1, CHARACTER_SLOTS + 1))
IMAGE_REQUEST_FIELDS: frozenset[str] = frozenset(
    (*_SCALAR_FIELDS, *REFERENCE_FIELDS, *CHARACTER_FIELDS)
)
"""Every parameter name ``POST /images`` accepts."""

_ACCEPTED_SUMMARY = (
    "prompt, model, aspectRatio, count, seed, reference_1…reference_10, "
    "character_1…character_7, email, replyUrl, replyRef, captchaToken, captchaRetry, captchaOrder"
)

_NUMBERED_RE = re.compile(r"^(reference|character)_([0-9]+)$")
# A marker is "@reference_N" / "@character_N" not glued to a word or an email
# address before it ("me@reference_1.com" is not a marker).
_MARKER_RE = re.compile(r"(?<![\w@])@(reference|character)_([0-9]+)")
_FORM_INTEGER_RE = re.compile(r"^[+-]?[0-9]+$")
_EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$")


def _normalized_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# Spellings a client plausibly sends for a parameter, keyed by _normalized_name.
_SYNONYMS: dict[str, str] = {
    **{_normalized_name(field): field for field in _SCALAR_FIELDS},
    "text": "prompt",
    "modelname": "model",
    "modelid": "model",
    "ratio": "aspectRatio",
    "aspect": "aspectRatio",
    "n": "count",
    "numimages": "count",
    "numberofimages": "count",
    "numoutputs": "count",
    "samplecount": "count",
    "variations": "count",
    "callbackurl": "replyUrl",
    "callback": "replyUrl",
    "webhook": "replyUrl",
    "webhookurl": "replyUrl",
    "callbackref": "replyRef",
    "account": "email",
    "reference": "reference_1",
    "referenceimage": "reference_1",
    "image": "reference_1",
    "imageinput": "reference_1",
    "inputimage": "reference_1",
    "character": "character_1",
}
_NUMBERED_SYNONYM_RE = re.compile(
    r"^(reference|ref|referenceimage|refimage|image|character|char)([0-9]+)$"
)
# Parameters of other APIs that POST /images deliberately lacks, with advice.
_NOT_OFFERED: dict[str, str] = {
    "async": "POST /images is synchronous; send replyUrl to be called back instead",
    "negativeprompt": "POST /images has no negative prompt; describe the wanted image in prompt",
    "resolution": "POST /images has no resolution; use POST /images/upscale for 2k/4k",
    "imagesize": "POST /images has no image size; use POST /images/upscale for 2k/4k",
    "cookies": "flowgate uses official API keys, not browser cookies",
}


@dataclass(frozen=True)
class ImageRequestSpec:
    """A valid ``POST /images`` request with every default applied.

    ``model`` is a canonical name (``imagen-4``, ``nano-banana-2``,
    ``nano-banana-pro``); ``aspect_ratio`` one of ``16:9 4:3 1:1 3:4 9:16``
    or ``auto``. ``references`` are ``(param name, parsed id)`` in numeric
    order of N; ``characters`` likewise ``(param name, character id)``.
    """

    prompt: str
    model: str
    aspect_ratio: str
    count: int
    seed: int | None
    references: tuple[tuple[str, ParsedMediaId], ...]
    characters: tuple[tuple[str, str], ...]
    email: str | None
    reply_url: str | None
    reply_ref: str | None

    @property
    def has_references(self) -> bool:
        """True when any ``reference_*`` or ``character_*`` was sent (image-to-image)."""
        return bool(self.references or self.characters)


# --------------------------------------------------------------------------- field readers


def is_absent(value: Any, *, form: bool) -> bool:
    """True when a field counts as not sent: ``None``, or an empty multipart field."""
    return value is None or (form and isinstance(value, str) and value == "")


def read_integer(
    value: Any, *, field: str, form: bool, minimum: int, maximum: int, default_note: str = ""
) -> int:
    """An integer field in ``minimum..maximum``; raises :class:`InvalidRequest` otherwise.

    JSON: a number (``2``, or an integral ``2.0``); booleans and strings are
    refused. Multipart (``form=True``): decimal text such as ``"2"``.
    """
    rule = f"{field} must be an integer from {minimum} to {maximum}{default_note}"
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if form and _FORM_INTEGER_RE.match(text):
            number = int(text)
        elif _FORM_INTEGER_RE.match(text):
            raise InvalidRequest(f"{rule}; send it as a JSON number ({text}), not a string")
    if number is None:
        raise InvalidRequest(f"{rule}; got {value!r}")
    if not minimum <= number <= maximum:
        raise InvalidRequest(f"{rule}; got {number}")
    return number


@overload
def read_optional_integer(
    data: Mapping[str, Any], field: str, *, form: bool, minimum: int, maximum: int, default: int
) -> int: ...
@overload
def read_optional_integer(
    data: Mapping[str, Any], field: str, *, form: bool, minimum: int, maximum: int, default: None
) -> int | None: ...
def read_optional_integer(
    data: Mapping[str, Any],
    field: str,
    *,
    form: bool,
    minimum: int,
    maximum: int,
    default: int | None,
) -> int | None:
    """``data[field]`` read with :func:`read_integer`, or ``default`` when not sent.

    A ``default`` is named in the error message, so a client knows it may leave it out.
    """
    value = data.get(field)
    if is_absent(value, form=form):
        return default
    note = "" if default is None else f" (default {default})"
    return read_integer(
        value, field=field, form=form, minimum=minimum, maximum=maximum, default_note=note
    )


def read_string(value: Any, *, field: str, form: bool) -> str:
    """A text field; raises :class:`InvalidRequest` naming ``field`` when it is not text."""
    if isinstance(value, str):
        return value
    if form:
        raise InvalidRequest(f"{field} must be a text field, not a file")
    raise InvalidRequest(f"{field} must be a string, got {type(value).__name__}")


def read_reply_url(value: Any, *, form: bool, field: str = "replyUrl") -> str:
    """An absolute ``http``/``https`` URL with a host."""
    text = read_string(value, field=field, form=form)
    rule = f"{field} must be an absolute http(s) URL such as https://example.com/hook"
    if len(text) > REPLY_URL_MAX_LENGTH:
        raise InvalidRequest(f"{rule}, at most {REPLY_URL_MAX_LENGTH} characters long")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in text):
        raise InvalidRequest(f"{rule}, without spaces")
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        raise InvalidRequest(f"{rule}; {text!r} is malformed") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{rule}; got {text!r}")
    return text


def read_reply_ref(value: Any, *, form: bool, field: str = "replyRef") -> str:
    """A string of at most :data:`REPLY_REF_MAX_LENGTH` characters."""
    text = read_string(value, field=field, form=form)
    if len(text) > REPLY_REF_MAX_LENGTH:
        raise InvalidRequest(
            f"{field} is {len(text)} characters long; at most {REPLY_REF_MAX_LENGTH} are allowed"
        )
    return text


def read_email(value: Any, *, form: bool, field: str = "email") -> str:
    """A plausible email address (``local@domain``, no spaces, at most 254 characters)."""
    text = read_string(value, field=field, form=form)
    if len(text) > EMAIL_MAX_LENGTH or not _EMAIL_RE.match(text):
        raise InvalidRequest(
            f"{field} must be the email address of one of your accounts, e.g. john@gmail.com; "
            f"got {text!r}"
        )
    return text


def read_prompt(value: Any, *, form: bool, field: str = "prompt") -> str:
    """The required prompt: a non-blank string of at most :data:`PROMPT_MAX_LENGTH` characters."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidRequest(f"{field} is required: send a non-empty text description")
    text = read_string(value, field=field, form=form)
    if len(text) > PROMPT_MAX_LENGTH:
        raise InvalidRequest(
            f"{field} is {len(text)} characters long; at most {PROMPT_MAX_LENGTH} are allowed"
        )
    return text


def read_image_media_id(value: Any, *, field: str, form: bool) -> ParsedMediaId:
    """An image ``mediaGenerationId`` (``…-image:…``); a video id gets a 400 that says so."""
    text = read_string(value, field=field, form=form)
    parsed = parse_media_generation_id(text.strip(), field=field)
    if parsed.kind != "image":
        raise InvalidRequest(
            f"{field} is a video mediaGenerationId; {field} needs an image id "
            "('…-image:…') from POST /assets or POST /images"
        )
    return parsed


# --------------------------------------------------------------------------- rules


def _unknown_parameter_message(names: list[str]) -> str:
    described: list[str] = []
    for name in names:
        numbered = _NUMBERED_RE.match(name)
        if numbered:
            kind = numbered.group(1)
            slots = REFERENCE_SLOTS if kind == "reference" else CHARACTER_SLOTS
            described.append(f"{name} ({kind}s are numbered {kind}_1 to {kind}_{slots})")
            continue
        key = _normalized_name(name)
        if key in _NOT_OFFERED:
            described.append(f"{name} ({_NOT_OFFERED[key]})")
            continue
        suggestion = _SYNONYMS.get(key)
        synonym = _NUMBERED_SYNONYM_RE.match(key)
        if suggestion is None and synonym:
            kind = "character" if synonym.group(1).startswith("char") else "reference"
            slots = REFERENCE_SLOTS if kind == "reference" else CHARACTER_SLOTS
            if 1 <= int(synonym.group(2)) <= slots:
                suggestion = f"{kind}_{int(synonym.group(2))}"
        described.append(f"{name} (did you mean {suggestion}?)" if suggestion else name)
    return (
        f"Unknown parameter(s): {', '.join(described)}. POST /images accepts: {_ACCEPTED_SUMMARY}"
    )


def _check_parameter_names(data: Mapping[str, Any]) -> None:
    unknown = [str(name) for name in data if name not in IMAGE_REQUEST_FIELDS]
    if unknown:
        raise InvalidRequest(_unknown_parameter_message(unknown))


def check_reference_budget(
    model: ImageModel | str, reference_count: int, character_image_count: int
) -> None:
    """Raise 400 "reference count exceeded" when references + character images pass the limit.

    The parser calls this counting each character as one image; the service
    calls it again once it knows how many images each character bundles.
    """
    entry = model if isinstance(model, ImageModel) else IMAGE_MODELS[model]
    total = reference_count + character_image_count
    if total <= entry.max_references:
        return
    advice = "remove some reference_* or character_*"
    larger = [m.name for m in IMAGE_MODELS.values() if m.max_references >= total]
    if larger:
        advice += f", or use {' / '.join(larger)} (up to {IMAGE_MODELS[larger[0]].max_references})"
    raise InvalidRequest(
        f"reference count exceeded: {entry.name} takes at most {entry.max_references} reference "
        f"images (reference_* plus every image of each character_*), this request has {total} "
        f"({reference_count} reference_*, {character_image_count} from character_*); {advice}"
    )


def _check_inline_markers(
    prompt: str,
    references: tuple[tuple[str, ParsedMediaId], ...],
    characters: tuple[tuple[str, str], ...],
) -> None:
    sent = {name for name, _ in references} | {name for name, _ in characters}
    missing: list[str] = []
    for match in _MARKER_RE.finditer(prompt):
        name = f"{match.group(1)}_{match.group(2)}"
        if name not in sent and name not in missing:
            missing.append(name)
    if missing:
        markers = ", ".join(f"@{name}" for name in missing)
        params = ", ".join(missing)
        raise InvalidRequest(
            f"prompt mentions {markers} but the request has no {params}: every inline marker "
            f"needs its matching parameter; send {params} or remove the marker"
        )


def _numbered_fields(
    data: Mapping[str, Any], names: tuple[str, ...], *, form: bool
) -> list[tuple[str, Any]]:
    # names are already in numeric order (reference_1 … reference_10).
    return [(name, data[name]) for name in names if not is_absent(data.get(name), form=form)]


def _read_character_id(value: Any, *, field: str, form: bool) -> str:
    text = read_string(value, field=field, form=form).strip()
    if not text or len(text) > CHARACTER_ID_MAX_LENGTH or any(ch.isspace() for ch in text):
        raise InvalidRequest(
            f"{field} must be a character id from POST /characters "
            f"(non-empty, no spaces, at most {CHARACTER_ID_MAX_LENGTH} characters)"
        )
    return text


def _resolve_aspect_ratio(
    value: Any, *, model: ImageModel, reference_count: int, form: bool
) -> str:
    if is_absent(value, form=form):
        return default_image_aspect_ratio(model, reference_count > 0)
    ratio = normalize_image_aspect_ratio(read_string(value, field="aspectRatio", form=form))
    if ratio != AUTO_ASPECT_RATIO:
        return ratio
    fixed = ", ".join(IMAGE_ASPECT_RATIOS)
    if not model.supports_auto_aspect_ratio:
        raise InvalidRequest(
            f"aspectRatio 'auto' is not available with {model.name}: only nano-banana-2 and "
            f"nano-banana-pro take it; send one of {fixed}, or choose a nano-banana model"
        )
    if reference_count == 0:
        raise InvalidRequest(
            "aspectRatio 'auto' needs at least one reference_* (the ratio is taken from the "
            f"first reference image); send one of {fixed}, or add reference_1"
        )
    return ratio


def parse_image_request(data: Mapping[str, Any], *, form: bool = False) -> ImageRequestSpec:
    """Validate a ``POST /images`` body and apply the contract's defaults.

    ``data`` is the decoded JSON object, or with ``form=True`` the fields of a
    multipart body (all strings). Rules, in the order they are checked:
    unknown parameter names; captcha fields; ``prompt``; ``reference_1..10``
    (image ``mediaGenerationId``); ``character_1..7``; ``model`` (default
    ``imagen-4``, or ``nano-banana-2`` when any reference or character is
    sent); ``aspectRatio`` (default ``16:9``, ``auto`` for nano-banana
    image-to-image); ``count`` 1-4 (default 4); ``seed`` 0…2³¹-1; the
    model's reference budget; inline ``@reference_N`` / ``@character_N``
    markers; ``email``; ``replyUrl``; ``replyRef``. The first violation
    raises :class:`InvalidRequest`.
    """
    if not isinstance(data, Mapping):
        raise InvalidRequest("The request body must be a JSON object (or a multipart form)")
    _check_parameter_names(data)
    validate_captcha_fields(data, form=form)

    prompt = read_prompt(
        None if is_absent(data.get("prompt"), form=form) else data["prompt"], form=form
    )

    references = tuple(
        (name, read_image_media_id(value, field=name, form=form))
        for name, value in _numbered_fields(data, REFERENCE_FIELDS, form=form)
    )
    characters = tuple(
        (name, _read_character_id(value, field=name, form=form))
        for name, value in _numbered_fields(data, CHARACTER_FIELDS, form=form)
    )
    has_any_reference = bool(references or characters)

    raw_model = data.get("model")
    if is_absent(raw_model, form=form):
        model = default_image_model(has_any_reference)
    else:
        model = resolve_image_model(read_string(raw_model, field="model", form=form))

    aspect_ratio = _resolve_aspect_ratio(
        data.get("aspectRatio"), model=model, reference_count=len(references), form=form
    )

    count = read_optional_integer(
        data, "count", form=form, minimum=COUNT_MIN, maximum=COUNT_MAX, default=DEFAULT_COUNT
    )
    seed = read_optional_integer(
        data, "seed", form=form, minimum=SEED_MIN, maximum=SEED_MAX, default=None
    )

    # Each character bundles 1-2 images; here it counts as one, the service
    # re-checks with the real numbers.
    check_reference_budget(model, len(references), len(characters))
    _check_inline_markers(prompt, references, characters)

    raw_email = data.get("email")
    email = None if is_absent(raw_email, form=form) else read_email(raw_email, form=form)
    raw_url = data.get("replyUrl")
    reply_url = None if is_absent(raw_url, form=form) else read_reply_url(raw_url, form=form)
    raw_ref = data.get("replyRef")
    reply_ref = None if is_absent(raw_ref, form=form) else read_reply_ref(raw_ref, form=form)

    return ImageRequestSpec(
        prompt=prompt,
        model=model.name,
        aspect_ratio=aspect_ratio,
        count=count,
        seed=seed,
        references=references,
        characters=characters,
        email=email,
        reply_url=reply_url,
        reply_ref=reply_ref,
    )


def request_echo(spec: ImageRequestSpec) -> dict[str, Any]:
    """The job record's ``request`` object for ``spec`` (contract §7.1).

    camelCase keys; defaults applied; ``email`` masked (``jo***@gmail.com``);
    absent optional fields omitted; ``reference_N`` is the id string (the
    service expands it to ``{email, id, referenceId, type, user}``);
    ``character_N`` the character id. Captcha fields are never echoed.
    """
    echo: dict[str, Any] = {
        "prompt": spec.prompt,
        "model": spec.model,
        "aspectRatio": spec.aspect_ratio,
        "count": spec.count,
    }
    if spec.seed is not None:
        echo["seed"] = spec.seed
    if spec.email is not None:
        echo["email"] = mask_email(spec.email)
    for name, ref in spec.references:
        echo[name] = media_generation_id(ref.user_id, ref.email, ref.kind, ref.media_id)
    for name, character_id in spec.characters:
        echo[name] = character_id
    if spec.reply_url is not None:
        echo["replyUrl"] = spec.reply_url
    if spec.reply_ref is not None:
        echo["replyRef"] = spec.reply_ref
    return echo
