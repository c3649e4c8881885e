"""The sandbox upstream: an in-process imitation of the Gemini API (see ``docs/sandbox.md``)."""

from flowgate.sandbox.app import create_sandbox_app
from flowgate.sandbox.config import SandboxConfig
from flowgate.sandbox.quotas import KeyQuota

__all__ = ["KeyQuota", "SandboxConfig", "create_sandbox_app"]
