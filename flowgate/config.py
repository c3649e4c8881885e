"""flowgate's one settings object.

Values come from ``FLOWGATE_*`` environment variables, then an optional TOML
file named by ``FLOWGATE_CONFIG``. Bad values fail at start with one line
(:func:`load_settings`).
"""

from __future__ import annotations

import os
import secrets
import socket
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """Settings could not be loaded; the message is one line for the operator."""


class Settings(BaseSettings):
    """Every knob of flowgate. Environment: ``FLOWGATE_<FIELD NAME IN CAPS>``."""

    model_config = SettingsConfigDict(env_prefix="FLOWGATE_", extra="forbid")

    data_dir: Path = Field(default=Path("flowgate-data"), description="Database, media, key")
    database_url: str = Field(
        default="",
        description="sqlite+aiosqlite:///PATH or postgresql+asyncpg://…; empty: SQLite",
    )
    public_url: str = Field(default="", description="Base URL used in signed links")
    secret_key: str = Field(default="", description="Signs media URLs, encrypts upstream keys")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(
        default=1, ge=1, le=64, description="Server processes on the port (PostgreSQL only)"
    )
    sqlite_busy_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long a write waits while another program holds the SQLite file's "
        "write lock; then the request fails with 503",
    )
    stop_grace_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How long a stop waits for jobs still running in the background "
        "(task API, async local upscales); what is left fails at the next start",
    )
    sandbox: bool = Field(default=True, description="Mount the sandbox upstream at /sandbox/gemini")
    webhook_allow_private: bool = False

    # Limits
    max_upload_bytes: int = Field(default=20_971_520, ge=1)
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    max_json_bytes: int = Field(default=2_000_000, ge=1024)
    media_url_ttl_seconds: int = Field(default=86_400, ge=60)
    job_retention_days: float = Field(default=7.0, gt=0)
    health_check_interval_seconds: float = Field(default=300.0, ge=1)
    upstream_timeout_seconds: float = Field(default=120.0, gt=0)
    upstream_max_connections: int = Field(default=4096, ge=1)
    default_max_concurrency: int = Field(default=4, ge=1)
    start_slots: int = Field(
        default=64,
        ge=1,
        description="Generation requests started at once per process; the rest wait in "
        "arrival order (docs/configuration.md)",
    )
    start_hold_seconds: float = Field(
        default=0.5, gt=0, description="Longest a request keeps its start slot"
    )
    queue_timeout_seconds: float = Field(default=30.0, ge=0)
    prices: dict[str, int] = Field(
        default_factory=dict,
        description='Credits per image/clip/operation, JSON: {"nano-banana-pro": 2, ...}',
    )
    quarantine_throttle_seconds: float = Field(default=60.0, gt=0)
    quarantine_account_seconds: float = Field(default=1800.0, gt=0)
    quarantine_midnight_margin_seconds: float = Field(default=10.0, ge=0)
    # Shifts the balancer's clock (quota windows, quarantine ends); for tests and simulations.
    clock_offset_seconds: float = 0.0
    webhook_poll_seconds: float = Field(default=0.5, gt=0)
    video_poll_seconds: float = Field(default=5.0, gt=0)
    video_sync_timeout_seconds: float = Field(default=600.0, gt=0)
    video_max_job_seconds: float = Field(default=3600.0, gt=0)
    video_upstream_retention_hours: float = Field(default=48.0, gt=0)
    video_concat_timeout_seconds: float = Field(default=180.0, gt=0)
    instance_id: str = Field(default="", description="Stable name of this instance")
    instance_stale_seconds: float = Field(default=20.0, gt=0)
    maintenance_interval_seconds: float = Field(default=60.0, gt=0)
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                f"(got {value.split('://')[0]!r})"
            )
        if value.startswith("sqlite") and (":memory:" in value or value.rstrip("/").endswith(":")):
            # Two connections (readers and the write queue) must see one database.
            raise ValueError("an in-memory SQLite database is not supported: give a file path")
        return value

    @field_validator("workers")
    @classmethod
    def _workers_need_postgres(cls, value: int, info: ValidationInfo) -> int:
        if value > 1 and not str(info.data.get("database_url", "")).startswith("postgresql"):
            raise ValueError(
                "more than 1 worker needs PostgreSQL (FLOWGATE_DATABASE_URL=postgresql+asyncpg://…):"
                " SQLite has a single writer"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return upper

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if not self.public_url:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
            self.public_url = f"http://{host}:{self.port}"
        return self

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'flowgate.db').resolve()}"

    @property
    def effective_instance_id(self) -> str:
        """This instance's name: ``FLOWGATE_INSTANCE_ID`` or ``host:port``.

        A restart keeps the name, so it takes back its own unfinished jobs at once.
        """
        return self.instance_id or f"{socket.gethostname()}:{self.port}"

    def for_worker(self, index: int) -> Settings:
        """The settings of worker ``index`` of ``flowgate serve``: its own instance id.

        Each worker is an instance; ``ID/index`` keeps the name stable across restarts, so a
        restarted worker takes back its own unfinished jobs at once.
        """
        return self.model_copy(
            update={"instance_id": f"{self.effective_instance_id}/{index}", "workers": 1}
        )

    @property
    def media_dir(self) -> Path:
        """Where media files are stored (content-addressed)."""
        return self.data_dir / "media"

    @property
    def sandbox_base_url(self) -> str:
        """Base URL of the mounted sandbox upstream (reached over HTTP like Google)."""
        return f"{self.public_url}/sandbox/gemini"


def _toml_values(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"FLOWGATE_CONFIG: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"FLOWGATE_CONFIG: {path} is not valid TOML: {exc}") from exc
    section = data.get("flowgate", data)
    if not isinstance(section, dict):
        raise SettingsError(f"FLOWGATE_CONFIG: {path} has no [flowgate] table")
    return section


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from TOML (if ``FLOWGATE_CONFIG``), env and overrides.

    Environment variables win over the TOML file; explicit overrides win over both.
    Raises :class:`SettingsError` with a single line naming the bad setting.
    """
    values: dict[str, Any] = {}
    config_path = os.environ.get("FLOWGATE_CONFIG")
    if config_path:
        toml_values = _toml_values(config_path)
        env_names = {
            key[len("FLOWGATE_") :].lower() for key in os.environ if key.startswith("FLOWGATE_")
        }
        values.update({k: v for k, v in toml_values.items() if k not in env_names})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "settings"
        env = f"FLOWGATE_{name.upper()}"
        raise SettingsError(f"invalid setting {env}: {first['msg']}") from exc


def ensure_secret_key(settings: Settings) -> str:
    """Return the secret key; generate and persist one in ``data_dir`` when unset.

    A persisted key keeps signed URLs and encrypted upstream keys valid across restarts.
    """
    if settings.secret_key:
        return settings.secret_key
    key_file = settings.data_dir / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process on the same data dir won the race
        return key_file.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
