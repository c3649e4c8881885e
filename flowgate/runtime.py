"""Everything a running flowgate instance holds: engine, HTTP pool, services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from flowgate.balancer.picker import AccountPicker
from flowgate.balancer.slots import SlotBoard
from flowgate.clock import offset_clock
from flowgate.config import Settings, ensure_secret_key
from flowgate.domain.quarantine import QuarantinePolicy
from flowgate.providers.base import Provider
from flowgate.providers.http_pool import HttpPool, new_upstream_client
from flowgate.providers.registry import build_provider
from flowgate.services.accounts import AccountService
from flowgate.services.background_jobs import BackgroundJobs
from flowgate.services.characters import CharacterService
from flowgate.services.credentials import SecretBox
from flowgate.services.credits import CreditService
from flowgate.services.images import ImageService
from flowgate.services.job_stats import JobStatsService
from flowgate.services.jobs import JobService
from flowgate.services.media import MediaService
from flowgate.services.openai_images import OpenAIImageService
from flowgate.services.ownership import OwnershipService
from flowgate.services.tasks import TaskService
from flowgate.services.upscale import UpscaleService
from flowgate.services.users import UserService
from flowgate.services.videos import VideoPoller, VideoService, VideoTimings
from flowgate.services.webhooks import WebhookSender
from flowgate.storage.db import create_engine, session_factory, write_queue
from flowgate.storage.media_store import MediaStore
from flowgate.storage.migrate import migrate
from flowgate.storage.write_queue import WriteQueue

log = logging.getLogger("flowgate.runtime")
SANDBOX_ACCOUNT_EMAIL = "sandbox@flowgate.local"


@dataclass
class Runtime:
    """The wired services of one instance."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    writes: WriteQueue
    http: HttpPool
    users: UserService
    openai: OpenAIImageService
    task_api: TaskService
    background: BackgroundJobs
    credits: CreditService
    accounts: AccountService
    media: MediaService
    picker: AccountPicker
    jobs: JobService
    job_stats: JobStatsService
    characters: CharacterService
    images: ImageService
    upscale: UpscaleService
    webhooks: WebhookSender
    poller: VideoPoller
    videos: VideoService
    ownership: OwnershipService
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self, *, give_up: Callable[[], bool] = lambda: False) -> None:
        """Finish the jobs still running in the background (unless ``give_up()``: told to
        stop at once), stop the periodic work and release connections."""
        # First, while heartbeats (so no other instance takes the jobs over) and webhook
        # deliveries still run: what the upstream already made is kept.
        cut = await self.background.drain(self.settings.stop_grace_seconds, give_up=give_up)
        if cut:
            log.warning(
                "stopping: %d background jobs still running were cut; they fail at the next "
                "start (FLOWGATE_STOP_GRACE_SECONDS is %g)",
                cut,
                self.settings.stop_grace_seconds,
            )
        self.stop.set()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.http.close()
        await self.writes.close()
        await self.engine.dispose()


async def open_runtime(settings: Settings, *, migrate_schema: bool = True) -> Runtime:
    """Connect, migrate and wire the services (no background tasks yet)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret = ensure_secret_key(settings)
    engine = create_engine(
        settings.effective_database_url, sqlite_busy_seconds=settings.sqlite_busy_seconds
    )
    if migrate_schema:
        await migrate(engine)
    sessions = session_factory(engine)
    writes = write_queue(engine, sessions, sqlite_busy_seconds=settings.sqlite_busy_seconds)
    http = new_upstream_client(
        timeout_seconds=settings.upstream_timeout_seconds,
        max_connections=settings.upstream_max_connections,
    )

    def provider_factory(kind: str, api_key: str, base_url: str | None) -> Provider:
        return build_provider(
            kind,
            http=http,
            api_key=api_key,
            base_url=base_url,
            sandbox_base_url=settings.sandbox_base_url,
        )

    accounts = AccountService(
        sessions,
        SecretBox(secret),
        provider_factory,
        sandbox_enabled=settings.sandbox,
        default_max_concurrency=settings.default_max_concurrency,
    )
    media = MediaService(
        sessions,
        writes,
        MediaStore(settings.media_dir),
        secret=secret,
        public_url=settings.public_url,
        url_ttl_seconds=settings.media_url_ttl_seconds,
    )
    sender = WebhookSender(
        sessions,
        http,
        allow_private=settings.webhook_allow_private,
        poll_seconds=settings.webhook_poll_seconds,
    )
    clock = offset_clock(settings.clock_offset_seconds)
    picker = AccountPicker(
        sessions,
        SlotBoard(),
        queue_timeout_seconds=settings.queue_timeout_seconds,
        policy=QuarantinePolicy(
            throttle_default_seconds=settings.quarantine_throttle_seconds,
            account_quota_seconds=settings.quarantine_account_seconds,
            midnight_margin_seconds=settings.quarantine_midnight_margin_seconds,
        ),
        clock=clock,
    )
    credits = CreditService(sessions, writes, settings.prices)
    jobs = JobService(
        sessions,
        writes,
        retention=timedelta(days=settings.job_retention_days),
        refresh_urls=media.refresh_links,
        on_enqueue=sender.wake,
        instance_id=settings.effective_instance_id,
        credits=credits,
    )
    poller = VideoPoller(
        sessions,
        accounts=accounts,
        picker=picker,
        jobs=jobs,
        media=media,
        poll_seconds=settings.video_poll_seconds,
        max_job_seconds=settings.video_max_job_seconds,
    )
    background = BackgroundJobs()
    videos = VideoService(
        sessions,
        accounts=accounts,
        picker=picker,
        jobs=jobs,
        media=media,
        poller=poller,
        credits=credits,
        background=background,
        timings=VideoTimings(
            poll_seconds=settings.video_poll_seconds,
            sync_timeout_seconds=settings.video_sync_timeout_seconds,
            max_job_seconds=settings.video_max_job_seconds,
            upstream_retention=timedelta(hours=settings.video_upstream_retention_hours),
            concat_timeout_seconds=settings.video_concat_timeout_seconds,
        ),
        allow_private_webhooks=settings.webhook_allow_private,
    )
    ownership = OwnershipService(
        sessions,
        jobs,
        poller,
        instance_id=settings.effective_instance_id,
        stale_seconds=settings.instance_stale_seconds,
    )
    characters = CharacterService(sessions)
    images = ImageService(
        sessions,
        accounts=accounts,
        picker=picker,
        jobs=jobs,
        media=media,
        characters=characters,
        credits=credits,
        allow_private_webhooks=settings.webhook_allow_private,
        max_upload_bytes=settings.max_upload_bytes,
        max_image_pixels=settings.max_image_pixels,
    )
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        writes=writes,
        http=http,
        users=UserService(sessions),
        credits=credits,
        openai=OpenAIImageService(images, media, max_upload_bytes=settings.max_upload_bytes),
        task_api=TaskService(
            sessions,
            images=images,
            jobs=jobs,
            media=media,
            credits=credits,
            background=background,
            allow_private_webhooks=settings.webhook_allow_private,
        ),
        background=background,
        accounts=accounts,
        media=media,
        picker=picker,
        jobs=jobs,
        job_stats=JobStatsService(sessions, clock),
        characters=characters,
        images=images,
        upscale=UpscaleService(
            sessions,
            accounts=accounts,
            picker=picker,
            jobs=jobs,
            media=media,
            credits=credits,
            max_image_pixels=settings.max_image_pixels,
        ),
        webhooks=sender,
        poller=poller,
        videos=videos,
        ownership=ownership,
    )


async def bootstrap(runtime: Runtime) -> str | None:
    """First start: create the ``admin`` user (and a sandbox account); return its token."""
    created = await runtime.users.ensure_bootstrap_user("admin")
    if created is None:
        return None
    user, token = created
    if runtime.settings.sandbox:
        await runtime.accounts.add_sandbox_account(user.id, SANDBOX_ACCOUNT_EMAIL)
    return token


def start_background(runtime: Runtime) -> None:
    """Start the periodic tasks owned by this instance."""
    settings = runtime.settings
    runtime.tasks.append(asyncio.create_task(runtime.webhooks.run(runtime.stop), name="webhooks"))
    runtime.tasks.append(asyncio.create_task(runtime.poller.run(runtime.stop), name="videos"))
    runtime.tasks.append(asyncio.create_task(runtime.ownership.run(runtime.stop), name="ownership"))
    runtime.tasks.append(
        asyncio.create_task(
            runtime.jobs.run_maintenance(settings.maintenance_interval_seconds, runtime.stop),
            name="job-maintenance",
        )
    )
    runtime.tasks.append(
        asyncio.create_task(
            runtime.accounts.run_health_checks(
                runtime.settings.health_check_interval_seconds, runtime.stop
            ),
            name="health-checks",
        )
    )
