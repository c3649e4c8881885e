"""Users and their API tokens."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flowgate.domain.errors import InvalidRequest, NotFound, SubscriptionRequired, Unauthorized
from flowgate.storage import users as user_rows
from flowgate.storage.database_errors import read_again_if_connection_lost
from flowgate.storage.models import ApiToken, User

TOKEN_PREFIX = "fg_"
# Tokens are looked up at most once a second per instance (DESIGN §1.4 allows ≤ 1 s caching).
_AUTH_CACHE_SECONDS = 1.0


def hash_token(token: str) -> str:
    """SHA-256 of a token; tokens have 256 bits of entropy, so no slow hash is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """The authenticated user of a request."""

    user_id: int
    name: str
    webhook_secret: str


@dataclass(frozen=True)
class UserSummary:
    """A user as listed by the CLI."""

    id: int
    name: str
    disabled: bool
    credits: int | None
    created: str


class UserService:
    """Creates users, issues tokens and authenticates requests."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._auth_cache: dict[str, tuple[float, Caller | None, bool]] = {}
        self._lookups: dict[str, asyncio.Future[tuple[Caller | None, bool]]] = {}

    async def create_user(self, name: str) -> tuple[User, str]:
        """Create a user and its first token; return the token in clear (shown once)."""
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidRequest("user name must be 1-100 characters")
        async with self._sessions.begin() as session:
            if await user_rows.user_by_name(session, name):
                raise InvalidRequest(f"user {name!r} already exists")
            user = User(name=name, webhook_secret=secrets.token_hex(32))
            session.add(user)
            try:
                await session.flush()
            except IntegrityError as exc:
                raise InvalidRequest(f"user {name!r} already exists") from exc
            token = self._add_token(session, user)
        return user, token

    def _add_token(self, session: AsyncSession, user: User) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:10]))
        return token

    async def issue_token(self, name: str) -> str:
        """A new token for an existing user."""
        async with self._sessions.begin() as session:
            user = await user_rows.user_by_name(session, name)
            if user is None:
                raise NotFound(f"no user named {name!r}")
            return self._add_token(session, user)

    async def list_users(self) -> list[UserSummary]:
        """All users."""
        async with self._sessions() as session:
            users = await user_rows.all_users(session)
        return [
            UserSummary(u.id, u.name, u.disabled, u.credits, u.created_at.isoformat())
            for u in users
        ]

    async def set_disabled(self, name: str, disabled: bool) -> None:
        """Disable (402 on every call) or enable a user."""
        async with self._sessions.begin() as session:
            user = await user_rows.user_by_name(session, name)
            if user is None:
                raise NotFound(f"no user named {name!r}")
            user.disabled = disabled
        self._auth_cache.clear()

    async def ensure_bootstrap_user(self, name: str = "admin") -> tuple[User, str] | None:
        """On first start (no users yet) create ``name``; return it with its token."""
        async with self._sessions() as session:
            if await user_rows.count_users(session):
                return None
        try:
            return await self.create_user(name)
        except InvalidRequest:
            return None  # another instance created it first

    async def authenticate(self, authorization: str | None) -> Caller:
        """Resolve an ``Authorization: Bearer`` header to a caller.

        Raises 401 for a missing or unknown token and 402 for a disabled user.
        """
        if not authorization:
            raise Unauthorized()
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized()
        digest = hash_token(token.strip())
        now = time.monotonic()
        cached = self._auth_cache.get(digest)
        if cached is None or cached[0] < now:
            # One lookup per token at a time: concurrent requests with it share the answer.
            pending = self._lookups.get(digest)
            if pending is None:
                pending = asyncio.ensure_future(self._lookup(digest))
                self._lookups[digest] = pending
                pending.add_done_callback(lambda _: self._lookups.pop(digest, None))
            caller, disabled = await asyncio.shield(pending)
            if len(self._auth_cache) > 10_000:
                self._auth_cache.clear()
            self._auth_cache[digest] = (now + _AUTH_CACHE_SECONDS, caller, disabled)
        else:
            _, caller, disabled = cached
        if caller is None:
            raise Unauthorized()
        if disabled:
            raise SubscriptionRequired()
        return caller

    async def _lookup(self, digest: str) -> tuple[Caller | None, bool]:
        async def read() -> tuple[ApiToken, User] | None:
            async with self._sessions() as session:
                return await user_rows.token_with_user(session, digest)

        found = await read_again_if_connection_lost(read)
        if found is None:
            return None, False
        token, user = found
        if not hmac.compare_digest(token.token_hash, digest):
            return None, False
        return Caller(user.id, user.name, user.webhook_secret), user.disabled
