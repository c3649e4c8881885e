"""Content-addressed file store for media bytes (filesystem; S3-compatible later)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path


class MediaStore:
    """Stores bytes under ``root/ab/cd/<sha256>``; identical content is stored once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        """Where the file with this hash lives."""
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _write(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename so a crash never leaves a half file under the final name.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    async def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its SHA-256 hex digest."""
        return await asyncio.to_thread(self._write, data)

    async def read(self, sha256: str) -> bytes:
        """Read stored bytes back."""
        return await asyncio.to_thread(self.path_for(sha256).read_bytes)

    def exists(self, sha256: str) -> bool:
        """True when the file is present."""
        return self.path_for(sha256).exists()
