"""Batch generation from a prompt file: parsing and validation, the runner, the manifest.

Usable without the CLI::

    items = load_prompt_file("prompts.json")
    async with AsyncClient(url, token) as client:
        summary = await BatchRunner(client, items, Path("out"), concurrency=4).run()
"""

from flowgate.batch.manifest import MANIFEST_NAME, Manifest, ManifestRecord
from flowgate.batch.prompts import (
    BatchItem,
    Problem,
    PromptFileError,
    account_problems,
    load_prompt_file,
)
from flowgate.batch.retry import RetryDecision, RetryPolicy
from flowgate.batch.runner import BatchEvent, BatchRunner, BatchSummary

__all__ = [
    "MANIFEST_NAME",
    "BatchEvent",
    "BatchItem",
    "BatchRunner",
    "BatchSummary",
    "Manifest",
    "ManifestRecord",
    "Problem",
    "PromptFileError",
    "RetryDecision",
    "RetryPolicy",
    "account_problems",
    "load_prompt_file",
]
