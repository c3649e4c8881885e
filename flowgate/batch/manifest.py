"""``manifest.jsonl``: one line per finished prompt, appended as it finishes.

The file is append-only; the last line for an index wins. Each line is
flushed and fsynced before the next prompt is reported done, so an
interrupted run loses at most the prompts that were in flight. A run with the
same prompt file and output folder reads it to skip what is already done.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

MANIFEST_NAME = "manifest.jsonl"
RecordStatus = Literal["done", "failed"]


class ManifestRecord(BaseModel):
    """The outcome of one prompt.

    ``stage`` says where a failure happened: ``upload`` (a reference file),
    ``generate`` (``POST /images``), ``download`` or ``save`` (the images exist
    on the server, under ``jobId``/``mediaGenerationIds``, but were not saved).
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    index: int
    line: int | None = None
    status: RecordStatus
    prompt: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str
    job_id: str | None = None
    media_generation_ids: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    http_status: int | None = None
    error: Any = None
    stage: str | None = None
    attempts: int = 0
    finished: str = Field(
        default_factory=lambda: (
            datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        )
    )

    def to_json(self) -> str:
        """One manifest line (without the newline)."""
        return json.dumps(self.model_dump(by_alias=True, mode="json"), ensure_ascii=False)


class Manifest:
    """The manifest of one output folder."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / MANIFEST_NAME

    def latest(self) -> dict[int, ManifestRecord]:
        """The last record of each index. Unreadable lines (a write cut short) are skipped."""
        records: dict[int, ManifestRecord] = {}
        if not self.path.exists():
            return records
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = ManifestRecord.model_validate(json.loads(line))
                except (json.JSONDecodeError, ValidationError):
                    continue
                records[record.index] = record
        return records

    def append(self, record: ManifestRecord) -> None:
        """Add one line and make it durable."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A line cut short by a crash has no newline: start on a fresh line after it.
        prefix = ""
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    prefix = "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(prefix + record.to_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
