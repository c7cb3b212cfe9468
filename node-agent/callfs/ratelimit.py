"""Rate limits: token buckets (GCRA) kept in this process or shared by a cluster's nodes in Redis.

A bucket holds at most ``burst`` requests and refills at ``rate`` requests per second. It is stored as one
number, the *theoretical arrival time* (TAT) of the generic cell rate algorithm: the time at which the bucket
would be full again. A request at time ``now`` is allowed when ``max(TAT, now) + 1/rate - burst/rate <= now``,
and then moves the TAT on by ``1/rate``; a refused request changes nothing. :func:`gcra` is that decision as
a pure function of the stored TAT and the current time.

- :class:`LocalBuckets` keeps the TATs in a dict (``dlm.type: local``, one node).
- :class:`RedisBuckets` keeps each TAT in a Redis key ``callfs:ratelimit:<bucket>`` (``dlm.type: redis``,
  shared by every node): one Lua script per check reads the Redis server's clock (``TIME``), decides and
  stores the new TAT with an expiry at the moment the bucket is full again. When Redis fails, the check
  allows the request (fails open), logs at most once every :data:`LOG_INTERVAL` seconds and does not try Redis
  again for :data:`BACKOFF` seconds.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Seconds on a monotonic scale."""

KEY_PREFIX = "callfs:ratelimit:"
"""Redis key of a bucket is this prefix + the bucket name (``<class>:<ip|key>:<client>``)."""

IO_TIMEOUT = 0.5
"""Seconds to connect to Redis or wait for a reply; a check tries twice (a stale pooled connection is replaced
once), so it fails open within about twice this."""

BACKOFF = 1.0
"""Seconds during which checks skip Redis (and allow) after it failed."""

LOG_INTERVAL = 30.0
"""Seconds between two log lines about Redis failing."""

_SWEEP_EVERY = 1024
""":class:`LocalBuckets` drops full (expired) buckets once every this many checks."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A bucket's shape: ``rate`` requests per second refilled (> 0), ``burst`` requests at most at once (>= 1)."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number of requests per second, got {self.rate}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1 request, got {self.burst}")

    @property
    def interval(self) -> float:
        """Seconds for one request's worth of refill."""
        return 1.0 / self.rate


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one check.

    ``limit``: the bucket's size (``burst``); ``remaining``: requests that could follow at once;
    ``reset_after``: seconds until the bucket is full again; ``retry_after``: seconds until a request would be
    allowed (0 when this one was).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float


_EPSILON = 1e-9
"""Seconds of float rounding tolerated, so that a request exactly at its allowed time is allowed."""


def gcra(tat: float | None, now: float, rule: Rule) -> tuple[Decision, float | None]:
    """Decide one request at time ``now`` (seconds) against a bucket whose stored TAT is ``tat`` (seconds on
    the same scale, ``None`` for a bucket never used or expired).

    Returns the decision and the TAT to store: the new one when allowed, ``tat`` unchanged when refused.
    """
    interval = rule.interval
    base = now if tat is None or tat < now else tat
    new_tat = base + interval
    allow_at = new_tat - interval * rule.burst
    if allow_at > now + _EPSILON:
        return Decision(False, rule.burst, 0, base - now, allow_at - now), tat
    remaining = min(rule.burst - 1, int((now - allow_at) / interval + _EPSILON))
    return Decision(True, rule.burst, remaining, new_tat - now, 0.0), new_tat


class Buckets(Protocol):
    """Where buckets live. ``check`` never raises for an unavailable store: it allows (fails open)."""

    async def check(self, bucket: str, rule: Rule) -> Decision:
        """Count one request against ``bucket`` (shape ``rule``) and decide it."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...


class LocalBuckets:
    """Buckets in this process. ``clock`` returns monotonic seconds (injectable for tests)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._tats: dict[str, float] = {}
        self._checks = 0

    def __len__(self) -> int:
        return len(self._tats)

    async def check(self, bucket: str, rule: Rule) -> Decision:
        now = self.clock()
        self._checks += 1
        if self._checks % _SWEEP_EVERY == 0:
            self._tats = {name: tat for name, tat in self._tats.items() if tat > now}
        decision, tat = gcra(self._tats.get(bucket), now, rule)
        if tat is not None:
            self._tats[bucket] = tat
        return decision

    async def close(self) -> None:
        self._tats.clear()


_CHECK = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local base = now
local stored = redis.call('GET', KEYS[1])
if stored then
  local tat = tonumber(stored)
  if tat and tat > now then base = tat end
end
local new_tat = base + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, 0, base - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
local remaining = math.floor((now - allow_at) / interval)
if remaining > burst - 1 then remaining = burst - 1 end
return {1, remaining, new_tat - now, 0}
"""
"""KEYS: bucket; ARGV: interval (µs), burst. The TAT is stored in µs of the Redis server's clock. Returns
``{allowed 0/1, remaining, reset_after µs, retry_after µs}``."""


class RedisBuckets:
    """Buckets in Redis at ``url``, shared by every node using it. Connects lazily; never raises from
    :meth:`check` (see the module description). ``clock`` (monotonic seconds) times the back-off."""

    def __init__(self, url: str, *, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.failures = 0
        self._client = aioredis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=IO_TIMEOUT, socket_timeout=IO_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
        )
        self._script: AsyncScript = self._client.register_script(_CHECK)
        self._skip_until = float("-inf")
        self._next_log = float("-inf")
        self._suppressed = 0

    async def check(self, bucket: str, rule: Rule) -> Decision:
        now = self.clock()
        if now < self._skip_until:
            return _open(rule)
        interval_us = max(1, round(rule.interval * 1_000_000))
        try:
            reply = await self._script(keys=[KEY_PREFIX + bucket], args=[interval_us, rule.burst])
            allowed, remaining, reset_us, retry_us = (int(v) for v in reply)
        except (RedisError, OSError, TimeoutError, ValueError, TypeError) as exc:
            self.failures += 1
            now = self.clock()
            self._skip_until = now + BACKOFF
            if now >= self._next_log:
                self._next_log = now + LOG_INTERVAL
                held, self._suppressed = self._suppressed, 0
                log.warning("rate limit store (Redis) unavailable, allowing requests: %s (%d more failures "
                            "not logged)", exc, held)
            else:
                self._suppressed += 1
            return _open(rule)
        return Decision(bool(allowed), rule.burst, remaining, reset_us / 1e6, retry_us / 1e6)

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()


def _open(rule: Rule) -> Decision:
    """The decision when the store failed: allowed, nothing known about the bucket."""
    return Decision(True, rule.burst, rule.burst - 1, 0.0, 0.0)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> list[IPNetwork]:
    """Networks from CIDR strings (``10.0.0.0/8``, ``fd00::/8``; a bare address is a /32 or /128).

    Raises:
        ValueError: a string that is not a network, naming it.
    """
    out: list[IPNetwork] = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{cidr!r} is not an IP network in CIDR notation (e.g. 10.0.0.0/8 or fd00::/8)") from None
    return out


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_ip(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> str:
    """The client's address: the connection's ``peer`` unless it is a trusted proxy; then the right-most
    address of the ``X-Forwarded-For`` values (``forwarded_for``, comma-separated lists in header order) that
    is not a trusted proxy itself. A malformed entry stops the walk at the address before it. ``"unknown"``
    when there is no peer address (a Unix socket)."""
    current = _address(peer) if peer else None
    if current is None:
        return peer or "unknown"
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    while any(current in network for network in trusted) and hops:
        previous = _address(hops.pop())
        if previous is None:
            break
        current = previous
    return str(current)
