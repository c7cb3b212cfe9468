"""Per-endpoint rate limits over HTTP: the middleware that counts requests and the headers it answers with.

Each request on a limited route is counted against the bucket of its endpoint class (``links``,
``downloads``, ``writes``, ``reads``; see :func:`endpoint_class`) and its client (IP address or API key's
user, per class). Requests authenticated with the internal secret (a peer forwarding a request it already
counted) are not counted. A refused request is answered 429 with the body of
:class:`~callfs.errors.RateLimitExceeded` and is not handled further.

Every answer on a limited route carries ``RateLimit-Limit`` (the bucket's size, requests),
``RateLimit-Remaining`` (requests that could follow at once) and ``RateLimit-Reset`` (seconds until the bucket
is full again); a 429 also carries ``Retry-After`` (seconds, at least 1).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from callfs.api.keys import CALLER, INTERNAL, NODE
from callfs.config import RateLimitConfig
from callfs.errors import RateLimitExceeded
from callfs.node import Node, redis_url
from callfs.ratelimit import (
    Buckets,
    Decision,
    IPNetwork,
    LocalBuckets,
    RedisBuckets,
    Rule,
    client_ip,
    parse_networks,
)

_DOWNLOAD_PREFIX = "/download/"
_API_PREFIX = "/v1/"
_LINKS_PATH = "/v1/links/generate"
_READ_METHODS = frozenset({"GET", "HEAD"})
_WRITE_METHODS = frozenset({"PUT", "POST", "PATCH", "DELETE"})
_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def endpoint_class(method: str, path: str) -> str | None:
    """The endpoint class of a request (``method``, raw ``path``), or ``None`` for a route never limited
    (``/health``, ``/ready``, ``/metrics``, the OpenAPI document, ``/internal/...``)."""
    if path.startswith(_DOWNLOAD_PREFIX):
        return "downloads"
    if not path.startswith(_API_PREFIX):
        return None
    if method == "POST" and path == _LINKS_PATH:
        return "links"
    if method in _READ_METHODS:
        return "reads"
    if method in _WRITE_METHODS:
        return "writes"
    return None


_COUNTERS: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def refusals_counter(registry: CollectorRegistry) -> Counter:
    """``callfs_rate_limit_refusals_total{class}`` in ``registry`` (created once per registry)."""
    counter = _COUNTERS.get(registry)
    if counter is None:
        counter = Counter("callfs_rate_limit_refusals", "Requests refused by a rate limit (429)", ["class"],
                          registry=registry)
        _COUNTERS[registry] = counter
    return counter


class RateLimits:
    """The node's limits: the rules of ``config`` (classes with ``rate`` 0 are off) over ``buckets``."""

    def __init__(self, config: RateLimitConfig, buckets: Buckets, refusals: Counter) -> None:
        self.buckets = buckets
        self.refusals = refusals
        self.trusted: list[IPNetwork] = parse_networks(config.trusted_proxies)
        self.rules: dict[str, tuple[Rule, str]] = {}
        for name, rule in config.classes:
            if rule.rate > 0:
                self.rules[name] = (Rule(rule.rate, rule.burst), rule.per)

    async def check(self, request: web.Request) -> Decision | None:
        """Count ``request``; its decision, or ``None`` when no limit applies to it."""
        if not self.rules or request.get(INTERNAL, False):
            return None
        name = endpoint_class(request.method, request.rel_url.raw_path)
        if name is None or name not in self.rules:
            return None
        rule, per = self.rules[name]
        caller = request.get(CALLER)
        if per == "key" and caller is not None:
            bucket = f"{name}:key:{caller.user}"
        else:
            ip = client_ip(request.remote, request.headers.getall("X-Forwarded-For", []), self.trusted)
            bucket = f"{name}:ip:{ip}"
        decision = await self.buckets.check(bucket, rule)
        if not decision.allowed:
            self.refusals.labels(name).inc()
        return decision


RATE_LIMITS = web.AppKey("rate_limits", RateLimits)
DECISION = web.RequestKey("rate_limit_decision", Decision)


def open_rate_limits(node: Node) -> RateLimits | None:
    """The limits of the node's ``rate_limits`` section (``None`` when disabled): buckets in Redis when
    ``dlm.type`` is ``redis``, else in this process."""
    config = node.config.rate_limits
    if not config.enabled:
        return None
    buckets: Buckets = RedisBuckets(redis_url(node.config)) if node.config.dlm.type == "redis" else LocalBuckets()
    return RateLimits(config, buckets, refusals_counter(node.metrics.registry))


def install(app: web.Application) -> None:
    """Set up the limits of ``app[NODE]`` on ``app``: the headers hook and closing the buckets on cleanup.
    :func:`rate_limit` must be among the app's middlewares (after authentication)."""
    limits = open_rate_limits(app[NODE])
    if limits is None:
        return
    app[RATE_LIMITS] = limits
    app.on_response_prepare.append(_add_headers)

    async def close(_: web.Application) -> None:
        await limits.buckets.close()

    app.on_cleanup.append(close)


@web.middleware
async def rate_limit(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count the request against its limit; a refusal is answered 429 ``RATE_LIMIT_EXCEEDED`` at once."""
    limits = request.app.get(RATE_LIMITS)
    decision = None if limits is None else await limits.check(request)
    if decision is None:
        return await handler(request)
    request[DECISION] = decision
    if not decision.allowed:
        from callfs.api.app import error_response  # the one place errors become JSON bodies

        refused = error_response(RateLimitExceeded(
            f"rate limit exceeded: at most {decision.limit} requests at once; retry in {retry_after(decision)} s"
        ))
        _set_headers(refused, decision)
        return refused
    response = await handler(request)
    # Also here, not only when the response is prepared: a response handed back unprepared may be prepared
    # with another request object than this one (the HTTP/3 relay's clone), which the headers hook would miss.
    if not response.prepared:
        _set_headers(response, decision)
    return response


def retry_after(decision: Decision) -> int:
    """``Retry-After`` of a refusal: whole seconds, at least 1."""
    return max(1, math.ceil(decision.retry_after))


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    decision = request.get(DECISION)
    if decision is not None:
        _set_headers(response, decision)


def _set_headers(response: web.StreamResponse, decision: Decision) -> None:
    values = (decision.limit, decision.remaining, max(0, math.ceil(decision.reset_after - 1e-6)))
    for name, value in zip(_HEADERS, values, strict=True):
        response.headers[name] = str(value)
    if not decision.allowed:
        response.headers["Retry-After"] = str(retry_after(decision))
