"""ORM models: the single source of truth (DESIGN §1.4)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    SQLite keeps no zone, so values read back are re-tagged as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}

    def __init__(self, **values: Any) -> None:
        """A new row from column values, which go straight into the instance's dict.

        SQLAlchemy's default constructor sets each one through its attribute, firing
        the change events of an object no session holds yet: ~0.2 M instructions for a
        job, on every request. A flush reads the same dict (the models have no
        relationships or validators, whose events this would skip).
        """
        cls = type(self)
        for key in values:
            if not hasattr(cls, key):
                raise TypeError(f"{key!r} is an invalid keyword argument for {cls.__name__}")
        self.__dict__.update(values)


class User(Base):
    """A person or app using flowgate's API."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    webhook_secret: Mapped[str] = mapped_column(String(100))
    credits: Mapped[int | None] = mapped_column(BigInteger, nullable=True, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Account(Base):
    """An upstream credential of one user (Gemini API key, sandbox, later Vertex/local)."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("user_id", "email", name="uq_accounts_user_email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    provider: Mapped[str] = mapped_column(String(32))
    secret_encrypted: Mapped[str] = mapped_column(Text, default="")
    secret_hint: Mapped[str] = mapped_column(String(32), default="")
    base_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    model_map: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=4)
    tier: Mapped[str] = mapped_column(String(16), default="paid")
    upscale: Mapped[str] = mapped_column(String(16), default="auto")
    health: Mapped[str] = mapped_column(Text, default="OK")
    models: Mapped[list[Any]] = mapped_column(JSON, default=list)
    health_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Media(Base):
    """Metadata of a stored file (upload or output). Bytes live in the media store by hash."""

    __tablename__ = "media"
    __table_args__ = (
        Index("ix_media_user_created", "user_id", "created_at"),
        # One stored upscale per (source image, resolution); NULLs (other media) never clash.
        Index("uq_media_upscale", "upscale_of", "upscale_resolution", unique=True),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    account_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # image | video
    source: Mapped[str] = mapped_column(String(16))  # upload | generated | derived
    mime: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Set on upscale results (POST /images/upscale): the source media id and "2k" | "4k".
    upscale_of: Mapped[str | None] = mapped_column(String(64), nullable=True)
    upscale_resolution: Mapped[str | None] = mapped_column(String(8), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    """One generation call: the contract's job record (GET /jobs/{jobId})."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_user_created", "user_id", "created_at"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_user_status_account", "user_id", "status", "account_email"),
    )

    id: Mapped[str] = mapped_column(String(160), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # image | video
    operation: Mapped[str] = mapped_column(String(32), default="generate")
    status: Mapped[str] = mapped_column(String(16), default="created")
    account_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[Any] = mapped_column(JSON, nullable=True)
    code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reply_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    purged: Mapped[bool] = mapped_column(Boolean, default=False)
    # The instance driving the job; another one takes over when its heartbeat goes stale.
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # What a poller needs to resume (upstream operation names, seeds, account); never shown.
    internal: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobEvent(Base):
    """One finished upstream attempt on an account: the 15-minute statistics read these."""

    __tablename__ = "job_events"
    __table_args__ = (
        # The 15-minute window is a range on finished_at for one user, whatever the account.
        # (An index led by account_email made SQLite scan every old event to group by it.)
        Index("ix_job_events_user_time", "user_id", "finished_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    user_id: Mapped[int] = mapped_column(Integer)
    account_email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    job_id: Mapped[str] = mapped_column(String(160))
    http_status: Mapped[int] = mapped_column(Integer)
    response_ms: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Character(Base):
    """A named bundle of 1-2 reference images, usable as ``character_N``."""

    __tablename__ = "characters"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    media_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """The outbox: one POST of a job record to its ``replyUrl``; survives restarts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_due", "state", "next_attempt_at"),
        Index("ix_webhook_job", "job_id", "seq"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(String(160))
    user_id: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # pending|delivered; "dead" (given up) was left by flowgate before migration 0008
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class QuarantineEntry(Base):
    """An account (or one model on it) kept out of the pool until ``until``."""

    __tablename__ = "quarantine_entries"
    __table_args__ = (
        UniqueConstraint("account_id", "model", name="uq_quarantine_account_model"),
        Index("ix_quarantine_user_until", "user_id", "until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    account_email: Mapped[str] = mapped_column(String(320))
    model: Mapped[str] = mapped_column(String(64))  # a flowgate model name, or "*"
    reason: Mapped[str] = mapped_column(String(80))
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Instance(Base):
    """A running flowgate process; its heartbeat tells others whether its jobs are orphaned."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def table_of(model: type[Base]) -> Table:
    """The Core table of an ORM class (for plain INSERTs)."""
    return cast(Table, model.__table__)


def row_values(row: Base) -> dict[str, Any]:
    """The column values of an ORM object, for a Core ``insert`` on a hot path.

    ``session.add`` goes through the unit of work (identity map, flush planning);
    a plain INSERT of the same values costs a fraction of that per row.
    """
    # The instance dict holds what was set; reading it skips the attribute machinery.
    keys = _column_keys(type(row))
    return {key: value for key, value in vars(row).items() if key in keys and value is not None}


@functools.cache
def _column_keys(model: type[Base]) -> frozenset[str]:
    return frozenset(column.key for column in table_of(model).columns)
