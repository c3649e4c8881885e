"""Upstream accounts of a user: add, update, list, delete, health checks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.domain.account_request import AccountSpec, normalize_email, parse_account_request
from flowgate.domain.errors import (
    AccountNotFound,
    InvalidRequest,
    UpstreamError,
    UpstreamUnreachable,
)
from flowgate.providers.base import Provider
from flowgate.services.credentials import SecretBox, mask_secret
from flowgate.services.users import Caller
from flowgate.storage import accounts as account_rows
from flowgate.storage.models import Account

log = logging.getLogger("flowgate.accounts")
HEALTH_OK = "OK"
PROVIDER_CACHE_SIZE = 4096

ProviderFactory = Callable[[str, str, str | None], Provider]
"""(provider kind, api key, base url) → provider."""


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


class AccountService:
    """Use cases around accounts; the only place that decrypts upstream secrets."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        provider_factory: ProviderFactory,
        *,
        sandbox_enabled: bool,
        default_max_concurrency: int,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._provider_factory = provider_factory
        self._providers: dict[tuple[str, str, str | None], Provider] = {}
        self._sandbox_enabled = sandbox_enabled
        self._default_max_concurrency = default_max_concurrency

    def provider_for(self, account: Account) -> Provider:
        """The provider object for an account, with its decrypted key.

        Kept per (kind, encrypted key, base URL): decrypting on every call cost more
        than the rest of choosing an account. A changed key or URL is a new entry.
        """
        cache_key = (account.provider, account.secret_encrypted, account.base_url)
        provider = self._providers.get(cache_key)
        if provider is None:
            if len(self._providers) >= PROVIDER_CACHE_SIZE:
                self._providers.clear()
            provider = self._provider_factory(
                account.provider, self._box.decrypt(account.secret_encrypted), account.base_url
            )
            self._providers[cache_key] = provider
        return provider

    async def upsert(self, caller: Caller, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create (True) or update (False) an account after checking its key upstream."""
        spec = parse_account_request(body)
        async with self._sessions() as session:
            existing = await account_rows.account_by_email(session, caller.user_id, spec.email)
        api_key = spec.api_key
        if api_key is None and existing is not None:
            api_key = self._box.decrypt(existing.secret_encrypted)
        if spec.provider == "gemini" and not api_key:
            raise InvalidRequest(
                'apiKey is required for provider "gemini": send a Gemini API key '
                '(or use "provider": "sandbox" to try flowgate without one)'
            )
        if spec.provider == "sandbox" and not self._sandbox_enabled and not spec.base_url:
            raise InvalidRequest(
                "the sandbox upstream is disabled on this server (FLOWGATE_SANDBOX=0); "
                "give baseUrl of a standalone sandbox (flowgate sandbox --port N)"
            )
        base_url = (
            spec.base_url
            if spec.base_url is not None
            else (existing.base_url if existing else None)
        )
        provider = self._provider_factory(spec.provider, api_key or "", base_url)
        try:
            report = await provider.health_check()
        except UpstreamError as exc:
            raise InvalidRequest(
                f"Failed to validate API key: {exc.status} {exc.info.message}"
            ) from exc
        except UpstreamUnreachable as exc:
            raise InvalidRequest(f"Failed to validate API key: {exc.message}") from exc
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            account = await account_rows.account_by_email(session, caller.user_id, spec.email)
            created = account is None
            if account is None:
                account = Account(
                    user_id=caller.user_id,
                    email=spec.email,
                    max_concurrency=self._default_max_concurrency,
                    model_map={},
                    created_at=now,
                )
                session.add(account)
            self._apply(account, spec, api_key or "", base_url)
            account.health = HEALTH_OK
            account.models = report.models
            account.health_checked_at = now
            account.updated_at = now
            await session.flush()
            view = self.render(account, with_models=True)
        log.info(
            "account %s",
            "created" if created else "updated",
            extra={"user_id": caller.user_id, "email": spec.email, "provider": spec.provider},
        )
        return view, created

    def _apply(
        self, account: Account, spec: AccountSpec, api_key: str, base_url: str | None
    ) -> None:
        account.provider = spec.provider
        account.secret_encrypted = self._box.encrypt(api_key) if api_key else ""
        account.secret_hint = mask_secret(api_key)
        account.base_url = base_url
        if spec.model_map is not None:
            account.model_map = spec.model_map
        if spec.max_concurrency is not None:
            account.max_concurrency = spec.max_concurrency
        if spec.tier is not None:
            account.tier = spec.tier
        if spec.upscale is not None:
            account.upscale = spec.upscale

    @staticmethod
    def render(account: Account, *, with_models: bool = False) -> dict[str, Any]:
        """The account as the API shows it: never the secret, only its masked hint."""
        view: dict[str, Any] = {
            "email": account.email,
            "provider": account.provider,
            "created": _iso(account.created_at),
            "updated": _iso(account.updated_at),
            "health": account.health,
            "apiKey": account.secret_hint,
            "baseUrl": account.base_url,
            "modelMap": account.model_map or {},
            "maxConcurrency": account.max_concurrency,
            "tier": account.tier,
            "upscale": account.upscale,
            "healthChecked": _iso(account.health_checked_at),
        }
        if with_models and account.health == HEALTH_OK:
            view["models"] = list(account.models or [])
        return view

    async def list_accounts(
        self, caller: Caller, balance: int | None = None
    ) -> dict[str, dict[str, Any]]:
        """GET /accounts: a map keyed by full email; each entry shows the user's credits."""
        async with self._sessions() as session:
            accounts = await account_rows.accounts_of(session, caller.user_id)
        credits = {"credits": balance, "unlimited": balance is None}
        return {
            a.email: {
                "created": _iso(a.created_at),
                "health": a.health,
                "provider": a.provider,
                "maxConcurrency": a.max_concurrency,
                "tier": a.tier,
                "credits": credits,
            }
            for a in accounts
        }

    async def get_account(self, caller: Caller, email: str) -> Account:
        """The caller's account or 404 (another user's account is also 404)."""
        key = self._email_key(email)
        async with self._sessions() as session:
            account = await account_rows.account_by_email(session, caller.user_id, key)
        if account is None:
            raise AccountNotFound(email)
        return account

    async def delete_account(self, caller: Caller, email: str) -> str:
        """Delete and return the contract's message."""
        key = self._email_key(email)
        async with self._sessions.begin() as session:
            account = await account_rows.account_by_email(session, caller.user_id, key)
            if account is None:
                raise AccountNotFound(email)
            await session.delete(account)
        return f"Google Flow account {email} deleted"

    @staticmethod
    def _email_key(email: str) -> str:
        try:
            return normalize_email(email)
        except InvalidRequest:
            raise AccountNotFound(email) from None

    async def add_sandbox_account(self, user_id: int, email: str) -> None:
        """Give a user a sandbox account without a round trip (used at bootstrap).

        The server is not listening yet at that point; the periodic check verifies it later.
        """
        async with self._sessions.begin() as session:
            if await account_rows.account_by_email(session, user_id, email):
                return
            session.add(
                Account(
                    user_id=user_id,
                    email=email,
                    provider="sandbox",
                    secret_encrypted="",
                    secret_hint="",
                    model_map={},
                    max_concurrency=self._default_max_concurrency,
                    health=HEALTH_OK,
                    models=[],
                    # The first check waits one interval: the server is not listening yet.
                    health_checked_at=datetime.now(UTC),
                )
            )

    async def check_due_accounts(self, interval: timedelta) -> int:
        """Re-check every account whose last check is older than ``interval``; return count."""
        now = datetime.now(UTC)
        async with self._sessions() as session:
            due = await account_rows.accounts_due_for_check(session, now - interval)
        checked = 0
        for account in due:
            async with self._sessions.begin() as session:
                if not await account_rows.claim_health_check(
                    session, account.id, account.health_checked_at, now
                ):
                    continue  # another instance took it
            health, models = await self._probe(account)
            async with self._sessions.begin() as session:
                row = await session.get(Account, account.id)
                if row is not None:
                    row.health = health
                    if health == HEALTH_OK:
                        row.models = models
            checked += 1
        return checked

    async def _probe(self, account: Account) -> tuple[str, list[str]]:
        try:
            report = await self.provider_for(account).health_check()
        except UpstreamError as exc:
            return f"{exc.status} {exc.info.message}", []
        except UpstreamUnreachable as exc:
            return exc.message, []
        except ValueError as exc:  # key cannot be decrypted (server key changed)
            return str(exc), []
        return HEALTH_OK, report.models

    async def run_health_checks(self, interval_seconds: float, stop: asyncio.Event) -> None:
        """Background loop: re-check accounts every ``interval_seconds``."""
        interval = timedelta(seconds=interval_seconds)
        tick = min(interval_seconds, 30.0)
        while not stop.is_set():
            try:
                await self.check_due_accounts(interval)
            except Exception:  # keep the loop alive; the next round retries
                log.exception("health check round failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=tick)
            except TimeoutError:
                pass
