"""Id formats of the contract: job ids, media ids, masked emails. Pure functions."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from flowgate.domain.errors import InvalidRequest

JobKind = Literal["image", "video"]
MediaKind = Literal["image", "video"]

_JOB_LETTER: dict[str, str] = {"image": "i", "video": "v"}
# User ids are bounded: int() refuses strings of more than 4,300 digits (a ValueError).
_JOB_RE = re.compile(
    r"^j(?P<digits>[0-9]{13,19})(?P<letter>[iv])-u(?P<uid>[0-9]{1,18})"
    r"-email:(?P<email>[^\s\x00-\x1f\x7f]+)-bot:google-flow$"
)
_MEDIA_RE = re.compile(
    r"^user:(?P<uid>[0-9]{1,18})-email:(?P<hex>[0-9a-f]*)-(?P<kind>image|video):(?P<id>[A-Za-z0-9_-]{1,64})$"
)
_INTERNAL_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def mask_email(email: str) -> str:
    """``john@gmail.com`` → ``jo***@gmail.com`` (contract: emails partly masked)."""
    local, sep, domain = email.partition("@")
    if not sep:
        return local[:2] + "***"
    return f"{local[:2]}***@{domain}"


def new_job_id(kind: JobKind, user_id: int, email: str | None, now: datetime | None = None) -> str:
    """A fresh id: ``j{epoch ms}{6 random digits}{i|v}-u{uid}-email:{masked}-bot:google-flow``."""
    moment = now or datetime.now(UTC)
    millis = int(moment.timestamp() * 1000)
    digits = f"{millis:013d}{secrets.randbelow(10**6):06d}"
    masked = mask_email(email) if email else "none"
    return f"j{digits}{_JOB_LETTER[kind]}-u{user_id}-email:{masked}-bot:google-flow"


@dataclass(frozen=True)
class ParsedJobId:
    """The parts of a job id."""

    kind: JobKind
    user_id: int


def parse_job_id(job_id: str) -> ParsedJobId:
    """Parse a job id or raise 400 ``Invalid job ID format``."""
    match = _JOB_RE.match(job_id)
    if not match:
        raise InvalidRequest("Invalid job ID format")
    kind: JobKind = "image" if match["letter"] == "i" else "video"
    return ParsedJobId(kind=kind, user_id=int(match["uid"]))


def new_media_id() -> str:
    """An internal media id (32 hex chars)."""
    return uuid.uuid4().hex


def media_generation_id(user_id: int, email: str | None, kind: MediaKind, media_id: str) -> str:
    """``user:{uid}-email:{hex email}-{kind}:{id}`` as in the contract (§10)."""
    hex_email = (email or "").encode().hex()
    return f"user:{user_id}-email:{hex_email}-{kind}:{media_id}"


@dataclass(frozen=True)
class ParsedMediaId:
    """The parts of a ``mediaGenerationId``."""

    user_id: int
    email: str
    kind: MediaKind
    media_id: str


def parse_media_generation_id(value: str, *, field: str = "mediaGenerationId") -> ParsedMediaId:
    """Parse a ``mediaGenerationId``; raise 400 naming ``field`` when malformed."""
    match = _MEDIA_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise InvalidRequest(
            f"{field} must be a mediaGenerationId like "
            "'user:{uid}-email:{hex}-image:{id}' as returned by POST /assets or POST /images"
        )
    try:
        email = bytes.fromhex(match["hex"]).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{field} has a malformed email segment") from exc
    kind: MediaKind = "image" if match["kind"] == "image" else "video"
    return ParsedMediaId(user_id=int(match["uid"]), email=email, kind=kind, media_id=match["id"])


def is_internal_media_id(value: str) -> bool:
    """True for a syntactically valid internal media id (guards file paths and URLs)."""
    return bool(_INTERNAL_ID_RE.match(value))
