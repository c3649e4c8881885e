"""``Client`` (blocking) and ``AsyncClient`` (asyncio) over httpx.

Both run the endpoint definitions of :mod:`flowgate.client.endpoints`. Errors:
every non-2xx answer raises :class:`FlowgateAPIError` (status, the contract's
error body, ``retry_after``); a connection failure raises
:class:`FlowgateConnectionError`. Neither client retries: retry policy belongs
to the caller (see :mod:`flowgate.batch.retry`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from flowgate.client import endpoints
from flowgate.client.endpoints import ApiCall, api_base_url
from flowgate.client.errors import FlowgateAPIError, FlowgateClientError, FlowgateConnectionError
from flowgate.client.files import sniff_content_type
from flowgate.client.models import (
    Account,
    AccountCreate,
    AccountSummary,
    AssetUpload,
    Character,
    ConcatenateResult,
    Download,
    GifResult,
    ImageRequest,
    ImageResult,
    Job,
    JobStats,
    Message,
    SavedAccount,
    UpscaleResolution,
    UpscaleResult,
    VideoRequest,
    VideoResult,
    WebhookSecret,
)

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"
# POST /images is synchronous: an answer can take the upstream's time plus the queue wait.
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
USER_AGENT = "flowgate-client/0.1"


def _body_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _read(call: ApiCall[T], request: httpx.Request, response: httpx.Response) -> T:
    if not response.is_success:
        raise FlowgateAPIError(
            response.status_code,
            _body_of(response),
            headers=response.headers,
            method=request.method,
            url=str(request.url),
        )
    try:
        return call.parse(response)
    except (ValueError, ValidationError) as exc:
        raise FlowgateClientError(
            f"{request.method} {request.url} answered {response.status_code} with a body this "
            f"client cannot read: {exc}"
        ) from exc


def _asset_bytes(source: bytes | str | Path, content_type: str | None) -> tuple[bytes, str]:
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    kind = content_type or sniff_content_type(data)
    if kind is None:
        raise FlowgateClientError(
            "not a PNG, JPEG or WebP image; pass content_type to send it anyway"
        )
    return data, kind


def _account_body(account: AccountCreate | str, fields: Mapping[str, Any]) -> AccountCreate:
    if isinstance(account, AccountCreate):
        return account
    return AccountCreate(email=account, **fields)


class _Base:
    """What both clients share: base URL, token, request building."""

    def __init__(self, url: str | None, token: str | None) -> None:
        self.base_url = api_base_url(url or DEFAULT_URL)
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    def _request(self, http: httpx.Client | httpx.AsyncClient, call: ApiCall[Any]) -> httpx.Request:
        return http.build_request(
            call.method,
            self.base_url + call.path,
            json=call.json,
            content=call.content,
            params=call.params,
            # The token goes only to API calls, never to fifeUrl downloads (another host, maybe).
            headers={**self._auth, **call.headers},
        )


class Client(_Base):
    """Blocking client for one flowgate server (or any Google Flow API v1 compatible one).

    ``url`` is the server (``http://127.0.0.1:8080``) or the API base
    (``…/v1/google-flow``); ``token`` a flowgate API token. Use as a context
    manager or call :meth:`close`.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(url, token)
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT})

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (unless it was passed in)."""
        if self._owns_http:
            self._http.close()

    def call(self, call: ApiCall[T]) -> T:
        """Send one :class:`ApiCall` and read its answer."""
        request = self._request(self._http, call)
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise FlowgateConnectionError(
                f"cannot reach {request.url}: {exc!r}", method=request.method, url=str(request.url)
            ) from exc
        return _read(call, request, response)

    # -- accounts
    def list_accounts(self) -> dict[str, AccountSummary]:
        """``GET /accounts``: ``{email: summary}``."""
        return self.call(endpoints.list_accounts())

    def get_account(self, email: str) -> Account:
        """``GET /accounts/{email}``."""
        return self.call(endpoints.get_account(email))

    def add_account(self, account: AccountCreate | str, **fields: Any) -> SavedAccount:
        """``POST /accounts``: ``add_account("me@x.com", provider="sandbox")`` or a model."""
        return self.call(endpoints.add_account(_account_body(account, fields)))

    def delete_account(self, email: str) -> Message:
        """``DELETE /accounts/{email}``."""
        return self.call(endpoints.delete_account(email))

    # -- assets and images
    def upload_asset(
        self,
        source: bytes | str | Path,
        *,
        content_type: str | None = None,
        email: str | None = None,
    ) -> AssetUpload:
        """``POST /assets[/{email}]``: bytes or a file path; the type is read from the bytes."""
        data, kind = _asset_bytes(source, content_type)
        return self.call(endpoints.upload_asset(data, kind, email))

    def generate_images(self, request: ImageRequest | Mapping[str, Any]) -> ImageResult:
        """``POST /images``; a Mapping is sent as the JSON body unchanged."""
        return self.call(endpoints.generate_images(request))

    def upscale_image(
        self, media_generation_id: str, resolution: UpscaleResolution | None = None
    ) -> UpscaleResult:
        """``POST /images/upscale``."""
        return self.call(endpoints.upscale_image(media_generation_id, resolution))

    def download(self, url: str) -> Download:
        """GET a signed ``fifeUrl`` (no token is sent)."""
        try:
            response = self._http.get(url)
        except httpx.TransportError as exc:
            raise FlowgateConnectionError(f"cannot download {url}: {exc!r}", url=url) from exc
        if not response.is_success:
            raise FlowgateAPIError(
                response.status_code, _body_of(response), headers=response.headers, url=url
            )
        return Download(
            data=response.content,
            content_type=response.headers.get("content-type", "application/octet-stream"),
        )

    # -- videos
    def generate_videos(self, request: VideoRequest | Mapping[str, Any]) -> VideoResult:
        """``POST /videos`` (sync)."""
        return self.call(endpoints.generate_videos(request))

    def start_videos(self, request: VideoRequest | Mapping[str, Any]) -> Job:
        """``POST /videos`` with ``async: true``: the job record; poll with ``wait_for_job``."""
        return self.call(endpoints.start_videos(request))

    def extend_video(self, media_generation_id: str, prompt: str, **options: Any) -> VideoResult:
        """``POST /videos/extend`` (sync)."""
        return self.call(endpoints.extend_video(media_generation_id, prompt, **options))

    def concatenate_videos(self, media: list[Mapping[str, Any]]) -> ConcatenateResult:
        """``POST /videos/concatenate``."""
        return self.call(endpoints.concatenate_videos(media))

    def video_gif(self, media_generation_id: str) -> GifResult:
        """``POST /videos/gif``."""
        return self.call(endpoints.video_gif(media_generation_id))

    def upscale_video(self, media_generation_id: str, resolution: str = "1080p") -> VideoResult:
        """``POST /videos/upscale`` (sync)."""
        return self.call(endpoints.upscale_video(media_generation_id, resolution))

    # -- jobs
    def get_job(self, job_id: str) -> Job:
        """``GET /jobs/{jobId}``."""
        return self.call(endpoints.get_job(job_id))

    def job_stats(self, options: str | None = None) -> JobStats:
        """``GET /jobs?options=summary|executing|history``."""
        return self.call(endpoints.job_stats(options))

    def wait_for_job(
        self, job_id: str, *, interval: float = 2.0, timeout: float | None = None
    ) -> Job:
        """Poll ``GET /jobs/{id}`` until ``completed`` or ``failed`` (or raise TimeoutError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_job(job_id)
            if job.finished:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:g} s")
            time.sleep(interval)

    # -- characters
    def create_character(self, name: str, images: list[str]) -> Character:
        """``POST /characters``."""
        return self.call(endpoints.create_character(name, images))

    def list_characters(self) -> list[Character]:
        """``GET /characters``."""
        return self.call(endpoints.list_characters())

    def get_character(self, character_id: str) -> Character:
        """``GET /characters/{id}``."""
        return self.call(endpoints.get_character(character_id))

    def delete_character(self, character_id: str) -> Message:
        """``DELETE /characters/{id}``."""
        return self.call(endpoints.delete_character(character_id))

    # -- webhooks
    def webhook_secret(self) -> WebhookSecret:
        """``GET /webhooks/secret``."""
        return self.call(endpoints.webhook_secret())


class AsyncClient(_Base):
    """The asyncio twin of :class:`Client`: same methods, awaitable."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
        max_connections: int = 100,
    ) -> None:
        super().__init__(url, token)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless it was passed in)."""
        if self._owns_http:
            await self._http.aclose()

    async def call(self, call: ApiCall[T]) -> T:
        """Send one :class:`ApiCall` and read its answer."""
        request = self._request(self._http, call)
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            raise FlowgateConnectionError(
                f"cannot reach {request.url}: {exc!r}", method=request.method, url=str(request.url)
            ) from exc
        return _read(call, request, response)

    # -- accounts
    async def list_accounts(self) -> dict[str, AccountSummary]:
        """``GET /accounts``: ``{email: summary}``."""
        return await self.call(endpoints.list_accounts())

    async def get_account(self, email: str) -> Account:
        """``GET /accounts/{email}``."""
        return await self.call(endpoints.get_account(email))

    async def add_account(self, account: AccountCreate | str, **fields: Any) -> SavedAccount:
        """``POST /accounts``."""
        return await self.call(endpoints.add_account(_account_body(account, fields)))

    async def delete_account(self, email: str) -> Message:
        """``DELETE /accounts/{email}``."""
        return await self.call(endpoints.delete_account(email))

    # -- assets and images
    async def upload_asset(
        self,
        source: bytes | str | Path,
        *,
        content_type: str | None = None,
        email: str | None = None,
    ) -> AssetUpload:
        """``POST /assets[/{email}]``: bytes or a file path; the type is read from the bytes."""
        if isinstance(source, bytes):
            data, kind = _asset_bytes(source, content_type)
        else:
            data, kind = await asyncio.to_thread(_asset_bytes, source, content_type)
        return await self.call(endpoints.upload_asset(data, kind, email))

    async def generate_images(self, request: ImageRequest | Mapping[str, Any]) -> ImageResult:
        """``POST /images``; a Mapping is sent as the JSON body unchanged."""
        return await self.call(endpoints.generate_images(request))

    async def upscale_image(
        self, media_generation_id: str, resolution: UpscaleResolution | None = None
    ) -> UpscaleResult:
        """``POST /images/upscale``."""
        return await self.call(endpoints.upscale_image(media_generation_id, resolution))

    async def download(self, url: str) -> Download:
        """GET a signed ``fifeUrl`` (no token is sent)."""
        try:
            response = await self._http.get(url)
        except httpx.TransportError as exc:
            raise FlowgateConnectionError(f"cannot download {url}: {exc!r}", url=url) from exc
        if not response.is_success:
            raise FlowgateAPIError(
                response.status_code, _body_of(response), headers=response.headers, url=url
            )
        return Download(
            data=response.content,
            content_type=response.headers.get("content-type", "application/octet-stream"),
        )

    # -- videos
    async def generate_videos(self, request: VideoRequest | Mapping[str, Any]) -> VideoResult:
        """``POST /videos`` (sync)."""
        return await self.call(endpoints.generate_videos(request))

    async def start_videos(self, request: VideoRequest | Mapping[str, Any]) -> Job:
        """``POST /videos`` with ``async: true``: the job record; poll with ``wait_for_job``."""
        return await self.call(endpoints.start_videos(request))

    async def extend_video(
        self, media_generation_id: str, prompt: str, **options: Any
    ) -> VideoResult:
        """``POST /videos/extend`` (sync)."""
        return await self.call(endpoints.extend_video(media_generation_id, prompt, **options))

    async def concatenate_videos(self, media: list[Mapping[str, Any]]) -> ConcatenateResult:
        """``POST /videos/concatenate``."""
        return await self.call(endpoints.concatenate_videos(media))

    async def video_gif(self, media_generation_id: str) -> GifResult:
        """``POST /videos/gif``."""
        return await self.call(endpoints.video_gif(media_generation_id))

    async def upscale_video(
        self, media_generation_id: str, resolution: str = "1080p"
    ) -> VideoResult:
        """``POST /videos/upscale`` (sync)."""
        return await self.call(endpoints.upscale_video(media_generation_id, resolution))

    # -- jobs
    async def get_job(self, job_id: str) -> Job:
        """``GET /jobs/{jobId}``."""
        return await self.call(endpoints.get_job(job_id))

    async def job_stats(self, options: str | None = None) -> JobStats:
        """``GET /jobs?options=summary|executing|history``."""
        return await self.call(endpoints.job_stats(options))

    async def wait_for_job(self, job_id: str, *, interval: float = 2.0) -> Job:
        """Poll ``GET /jobs/{id}`` until ``completed`` or ``failed``.

        Bound the wait with ``asyncio.timeout(...)`` around the call.
        """
        while True:
            job = await self.get_job(job_id)
            if job.finished:
                return job
            await asyncio.sleep(interval)

    # -- characters
    async def create_character(self, name: str, images: list[str]) -> Character:
        """``POST /characters``."""
        return await self.call(endpoints.create_character(name, images))

    async def list_characters(self) -> list[Character]:
        """``GET /characters``."""
        return await self.call(endpoints.list_characters())

    async def get_character(self, character_id: str) -> Character:
        """``GET /characters/{id}``."""
        return await self.call(endpoints.get_character(character_id))

    async def delete_character(self, character_id: str) -> Message:
        """``DELETE /characters/{id}``."""
        return await self.call(endpoints.delete_character(character_id))

    # -- webhooks
    async def webhook_secret(self) -> WebhookSecret:
        """``GET /webhooks/secret``."""
        return await self.call(endpoints.webhook_secret())
