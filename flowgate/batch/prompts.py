"""Prompt files for ``flowgate generate``: read, validate completely, describe every problem.

Three formats:

- **JSON** (the hosted service's ``prompts.json``): a list of objects with
  ``prompt`` and optionally ``model``, ``aspectRatio``, ``count``, ``seed``,
  ``email``, ``reference_1`` … ``reference_10`` and ``character_1`` …
  ``character_7``. Keys starting with ``__`` are comments and ignored.
- **JSON Lines**: one such object per line.
- **Plain text**: one prompt per line; blank lines and lines starting with
  ``#`` are skipped.

A ``reference_N`` is a local image file (PNG, JPEG or WebP, at most 20 MiB;
relative paths are relative to the prompt file's folder), uploaded once per
run and reused, or an existing image ``mediaGenerationId``. Every item is also
checked against the ``POST /images`` rules (``flowgate.domain``, pure code),
so a bad ``count`` or ``aspectRatio`` is reported before anything is sent.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flowgate.client.files import MAX_UPLOAD_BYTES, describe_bytes, sniff_content_type
from flowgate.domain.errors import InvalidRequest
from flowgate.domain.ids import parse_media_generation_id
from flowgate.domain.image_request import CHARACTER_FIELDS, REFERENCE_FIELDS, parse_image_request

PromptFormat = Literal["auto", "json", "jsonl", "text"]
PARAMETER_KEYS: tuple[str, ...] = ("model", "aspectRatio", "count", "seed", "email")
ALLOWED_KEYS: frozenset[str] = frozenset(
    ("prompt", *PARAMETER_KEYS, *REFERENCE_FIELDS, *CHARACTER_FIELDS)
)
COMMENT_KEY_PREFIX = "__"
REFERENCE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp"})
# Stands in for a local reference file while the domain rules check the request.
_PLACEHOLDER_REFERENCE = "user:0-email:-image:localfile"
_REFERENCE_SLOT_RE = re.compile(r"^reference_([0-9]+)$")
_CHARACTER_SLOT_RE = re.compile(r"^character_([0-9]+)$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a prompt file, with where it is (``line`` 0: the whole file)."""

    location: str
    message: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class PromptFileError(Exception):
    """The prompt file cannot be run; ``problems`` lists every reason, in file order.

    ``items`` are the prompts that passed, so callers can check them further
    (e.g. their accounts) and report everything at once.
    """

    def __init__(self, problems: list[Problem], items: list[BatchItem] | None = None) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems
        self.items = items or []


@dataclass(frozen=True)
class ReferenceFile:
    """A local image named by ``reference_N``."""

    written: str  # as in the prompt file
    path: Path  # resolved
    content_type: str
    sha256: str


@dataclass(frozen=True)
class BatchItem:
    """One validated prompt: what to send, and where it came from.

    ``index`` is the 1-based position among the file's prompts (it names the
    output files ``{index}_{n}.{ext}``); ``line`` the file line it starts on.
    """

    index: int
    line: int
    location: str
    prompt: str
    params: dict[str, Any]
    reference_files: dict[int, ReferenceFile] = field(default_factory=dict)
    reference_ids: dict[int, str] = field(default_factory=dict)
    characters: dict[int, str] = field(default_factory=dict)

    @property
    def email(self) -> str | None:
        """The account named by the item, if any."""
        value = self.params.get("email")
        return value if isinstance(value, str) else None

    def parameters(self) -> dict[str, Any]:
        """The item's parameters as written (references as file paths or ids)."""
        out = dict(self.params)
        for slot, ref in self.reference_files.items():
            out[f"reference_{slot}"] = ref.written
        for slot, media_id in self.reference_ids.items():
            out[f"reference_{slot}"] = media_id
        for slot, character in self.characters.items():
            out[f"character_{slot}"] = character
        return dict(sorted(out.items()))

    def fingerprint(self) -> str:
        """A hash of everything that decides the output (reference files by content)."""
        refs = {str(s): f"file:{r.sha256}" for s, r in self.reference_files.items()}
        refs.update({str(s): f"id:{v}" for s, v in self.reference_ids.items()})
        data = {
            "prompt": self.prompt,
            "params": self.params,
            "references": refs,
            "characters": {str(s): v for s, v in self.characters.items()},
        }
        blob = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def request_body(self, uploaded: Mapping[int, str]) -> dict[str, Any]:
        """The ``POST /images`` body, with ``uploaded[slot]`` ids for the local files."""
        body: dict[str, Any] = {"prompt": self.prompt, **self.params}
        references = {**self.reference_ids, **uploaded}
        for slot in sorted(references):
            body[f"reference_{slot}"] = references[slot]
        for slot in sorted(self.characters):
            body[f"character_{slot}"] = self.characters[slot]
        return body


@dataclass(frozen=True)
class _RawItem:
    line: int
    value: Any


# ------------------------------------------------------------------------------ reading


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _json_array_items(text: str, name: str) -> list[_RawItem]:
    """The elements of a top-level JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text[pos:].startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PromptFileError(
                [
                    Problem(
                        f"{name}:{exc.lineno}",
                        f"not valid JSON: {exc.msg} (column {exc.colno})",
                        exc.lineno,
                    )
                ]
            ) from None
        raise PromptFileError(
            [
                Problem(
                    name,
                    f"must be a JSON list of prompt objects, got a {type(value).__name__}; "
                    'write [{"prompt": "..."}, ...]',
                )
            ]
        )
    try:
        json.loads(text)  # one pass for a precise syntax error before walking the elements
    except json.JSONDecodeError as exc:
        raise PromptFileError(
            [
                Problem(
                    f"{name}:{exc.lineno}",
                    f"not valid JSON: {exc.msg} (column {exc.colno})",
                    exc.lineno,
                )
            ]
        ) from None
    items: list[_RawItem] = []
    pos += 1
    separator = re.compile(r"[\s,]*")  # always matches (possibly nothing)
    while True:
        gap = separator.match(text, pos)
        pos = gap.end() if gap else pos
        if text[pos] == "]":
            return items
        value, end = decoder.raw_decode(text, pos)
        items.append(_RawItem(_line_of(text, pos), value))
        pos = end


def _jsonl_items(text: str, name: str) -> tuple[list[_RawItem], list[Problem]]:
    items: list[_RawItem] = []
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(_RawItem(number, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(
                    f"{name}:{number}", f"not valid JSON: {exc.msg} (column {exc.colno})", number
                )
            )
    return items, problems


def _text_items(text: str) -> list[_RawItem]:
    return [
        _RawItem(number, {"prompt": line.strip()})
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def detect_format(path: Path, text: str) -> Literal["json", "jsonl", "text"]:
    """By extension (``.json``, ``.jsonl``/``.ndjson``, ``.txt``), else by content."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".txt":
        return "text"
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            json.loads(text)
            return "json"
        except json.JSONDecodeError:
            pass  # a text prompt may well start with "[" (e.g. a sandbox directive)
    if stripped.startswith("{"):
        return "jsonl"
    return "text"


# ------------------------------------------------------------------------------ checking


class _FileCache:
    """Reads each reference file once, even when many prompts use it."""

    def __init__(self) -> None:
        self._seen: dict[Path, ReferenceFile | str] = {}

    def load(self, path: Path, written: str) -> ReferenceFile | str:
        """The file, or a sentence saying why it cannot be used."""
        if path not in self._seen:
            self._seen[path] = self._check(path, written)
        cached = self._seen[path]
        if isinstance(cached, ReferenceFile) and cached.written != written:
            return ReferenceFile(written, cached.path, cached.content_type, cached.sha256)
        return cached

    @staticmethod
    def _check(path: Path, written: str) -> ReferenceFile | str:
        if not path.exists():
            return f"file {written!r} not found (looked for {path})"
        if not path.is_file():
            return f"{written!r} is not a file ({path})"
        if path.suffix.lower() not in REFERENCE_EXTENSIONS:
            return (
                f"{written!r}: extension {path.suffix or '(none)'!r} is not supported; "
                "use a PNG, JPEG or WebP image (.png, .jpg, .jpeg, .webp)"
            )
        size = path.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            return f"{written!r} is {size} bytes, over the {MAX_UPLOAD_BYTES}-byte upload limit"
        try:
            data = path.read_bytes()
        except OSError as exc:
            return f"{written!r} cannot be read: {exc.strerror}"
        content_type = sniff_content_type(data)
        if content_type is None:
            return (
                f"{written!r} holds {describe_bytes(data)}, not a PNG, JPEG or WebP image; "
                "convert it to one of those"
            )
        return ReferenceFile(written, path, content_type, hashlib.sha256(data).hexdigest())


def _is_media_id(value: str) -> bool:
    try:
        parse_media_generation_id(value)
    except InvalidRequest:
        return False
    return True


def _check_item(
    raw: _RawItem,
    index: int,
    location: str,
    base_dir: Path,
    defaults: Mapping[str, Any],
    files: _FileCache,
) -> tuple[BatchItem | None, list[Problem]]:
    problems: list[Problem] = []

    def problem(message: str) -> None:
        problems.append(Problem(location, message, raw.line))

    if not isinstance(raw.value, dict):
        problem(f'must be an object like {{"prompt": "..."}}, got {type(raw.value).__name__}')
        return None, problems
    data = {k: v for k, v in raw.value.items() if not str(k).startswith(COMMENT_KEY_PREFIX)}
    unknown = sorted(k for k in data if k not in ALLOWED_KEYS)
    if unknown:
        problem(
            f"unknown key(s) {', '.join(unknown)}; allowed: prompt, model, aspectRatio, count, "
            "seed, email, reference_1…reference_10, character_1…character_7 "
            "(keys starting with __ are comments)"
        )
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        problem("prompt is required: a non-empty string")

    params = {k: data[k] for k in PARAMETER_KEYS if data.get(k) is not None}
    for key, value in defaults.items():
        if value is not None and key not in params:
            params[key] = value

    reference_files: dict[int, ReferenceFile] = {}
    reference_ids: dict[int, str] = {}
    characters: dict[int, str] = {}
    for key, value in data.items():
        slot_match = _REFERENCE_SLOT_RE.match(key)
        if slot_match and key in ALLOWED_KEYS:
            slot = int(slot_match.group(1))
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                problem(f"{key} must be a file path (or a mediaGenerationId), got {value!r}")
            elif _is_media_id(value.strip()):
                reference_ids[slot] = value.strip()
            else:
                path = (base_dir / Path(value).expanduser()).resolve()
                loaded = files.load(path, value)
                if isinstance(loaded, str):
                    problem(f"{key}: {loaded}")
                else:
                    reference_files[slot] = loaded
        character_match = _CHARACTER_SLOT_RE.match(key)
        if character_match and key in ALLOWED_KEYS and value is not None:
            if isinstance(value, str):
                characters[int(character_match.group(1))] = value
            else:
                problem(f"{key} must be a character id string, got {value!r}")

    if not problems and isinstance(prompt, str):
        # The server's own rules (pure domain code): model, ratio, count, seed, budget, markers.
        body = {"prompt": prompt, **params}
        body.update({f"reference_{s}": _PLACEHOLDER_REFERENCE for s in reference_files})
        body.update({f"reference_{s}": v for s, v in reference_ids.items()})
        body.update({f"character_{s}": v for s, v in characters.items()})
        try:
            parse_image_request(body)
        except InvalidRequest as exc:
            problem(exc.message)
    if problems or not isinstance(prompt, str):
        return None, problems
    item = BatchItem(
        index=index,
        line=raw.line,
        location=location,
        prompt=prompt,
        params=params,
        reference_files=reference_files,
        reference_ids=reference_ids,
        characters=characters,
    )
    return item, []


def load_prompt_file(
    path: str | Path,
    *,
    fmt: PromptFormat = "auto",
    defaults: Mapping[str, Any] | None = None,
) -> list[BatchItem]:
    """Read and validate a whole prompt file; raise :class:`PromptFileError` listing every problem.

    ``defaults`` (``model``, ``aspectRatio``, ``count``, ``seed``, ``email``)
    apply to items that do not set them.
    """
    file = Path(path)
    name = file.name
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PromptFileError([Problem(str(file), "file not found")]) from None
    except UnicodeDecodeError:
        raise PromptFileError([Problem(str(file), "not UTF-8 text")]) from None
    except OSError as exc:
        raise PromptFileError([Problem(str(file), f"cannot read: {exc.strerror}")]) from None
    kind = detect_format(file, text) if fmt == "auto" else fmt
    problems: list[Problem] = []
    if kind == "json":
        raw_items = _json_array_items(text, name)
    elif kind == "jsonl":
        raw_items, problems = _jsonl_items(text, name)
    else:
        raw_items = _text_items(text)
    if not raw_items and not problems:
        raise PromptFileError([Problem(name, "has no prompts")])
    unknown_defaults = sorted(set(defaults or {}) - set(PARAMETER_KEYS))
    if unknown_defaults:
        raise ValueError(f"unknown default parameter(s): {', '.join(unknown_defaults)}")
    files = _FileCache()
    items: list[BatchItem] = []
    base_dir = file.parent.resolve()
    for index, raw in enumerate(raw_items, start=1):
        location = f"{name}:{raw.line} (#{index})"
        item, item_problems = _check_item(raw, index, location, base_dir, defaults or {}, files)
        problems.extend(item_problems)
        if item is not None:
            items.append(item)
    if problems:
        raise PromptFileError(sorted(problems, key=lambda p: p.line), items)
    return items


def account_problems(items: list[BatchItem], accounts: Mapping[str, str | None]) -> list[Problem]:
    """Items naming an account the caller lacks, or one whose health is not ``OK``.

    ``accounts`` maps email → health (``GET /accounts``). Servers that mask the
    emails in that map (``jo***@gmail.com``) cannot be checked: nothing is reported.
    """
    if any("***" in email for email in accounts):
        return []
    known = {email.lower(): health for email, health in accounts.items()}
    problems: list[Problem] = []
    for item in items:
        email = item.email
        if email is None:
            continue
        if email.lower() not in known:
            have = ", ".join(sorted(known)) or "none"
            problems.append(
                Problem(
                    item.location,
                    f"email {email} is not one of your accounts (you have: {have})",
                    item.line,
                )
            )
        elif known[email.lower()] not in (None, "OK"):
            problems.append(
                Problem(
                    item.location,
                    f"account {email} health is {known[email.lower()]!r}; fix or re-add it first",
                    item.line,
                )
            )
    return problems
