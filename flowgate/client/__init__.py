"""Python client for flowgate's ``/v1/google-flow`` API (and compatible servers).

```python
from flowgate.client import Client, ImageRequest

with Client("http://127.0.0.1:8080", token) as flow:
    result = flow.generate_images(ImageRequest(prompt="a red fox", count=2))
    for image in result.images:
        flow.download(image.fife_url)
```

This package imports nothing of flowgate's server (api, services, storage), so
it can be used on its own. See docs/cli.md.
"""

from flowgate.client.endpoints import ApiCall, api_base_url
from flowgate.client.errors import (
    FlowgateAPIError,
    FlowgateClientError,
    FlowgateConnectionError,
    SkipReason,
)
from flowgate.client.http import DEFAULT_URL, AsyncClient, Client
from flowgate.client.models import (
    Account,
    AccountCreate,
    AccountSummary,
    AssetUpload,
    Character,
    Download,
    GeneratedImage,
    GeneratedVideo,
    ImageRequest,
    ImageResult,
    Job,
    JobStats,
    Message,
    SavedAccount,
    UpscaleResult,
    VideoRequest,
    VideoResult,
    WebhookSecret,
)

__all__ = [
    "DEFAULT_URL",
    "Account",
    "AccountCreate",
    "AccountSummary",
    "ApiCall",
    "AssetUpload",
    "AsyncClient",
    "Character",
    "Client",
    "Download",
    "FlowgateAPIError",
    "FlowgateClientError",
    "FlowgateConnectionError",
    "GeneratedImage",
    "GeneratedVideo",
    "ImageRequest",
    "ImageResult",
    "Job",
    "JobStats",
    "Message",
    "SavedAccount",
    "SkipReason",
    "UpscaleResult",
    "VideoRequest",
    "VideoResult",
    "WebhookSecret",
    "api_base_url",
]
