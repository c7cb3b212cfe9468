"""Rate limits: the bucket math (an injected clock), the in-process buckets, Redis failing open, client IPs,
endpoint classes and the configuration's validation."""

from __future__ import annotations

import asyncio
import socket

import pytest

from callfs.api.ratelimit import endpoint_class
from callfs.config import Config, ConfigError, load_config
from callfs.ratelimit import LocalBuckets, RedisBuckets, Rule, client_ip, gcra, parse_networks


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(rule: Rule, times: list[float]) -> list[bool]:
    tat: float | None = None
    out = []
    for now in times:
        decision, tat = gcra(tat, now, rule)
        out.append(decision.allowed)
    return out


def test_burst_then_refill_at_the_rate() -> None:
    rule = Rule(rate=2, burst=3)
    tat: float | None = None
    remaining = []
    for _ in range(3):
        decision, tat = gcra(tat, 10.0, rule)
        assert decision.allowed
        remaining.append(decision.remaining)
    assert remaining == [2, 1, 0]
    refused, same = gcra(tat, 10.0, rule)
    assert not refused.allowed and same == tat  # a refusal does not consume anything
    assert refused.remaining == 0
    assert refused.retry_after == pytest.approx(0.5)
    assert refused.reset_after == pytest.approx(1.5)  # three tokens at 2/s
    assert refused.limit == 3
    assert not gcra(tat, 10.49, rule)[0].allowed
    later, tat = gcra(tat, 10.5, rule)
    assert later.allowed and later.remaining == 0
    full, _ = gcra(tat, 100.0, rule)  # long idle: a full bucket, never more than burst
    assert full.allowed and full.remaining == 2 and full.reset_after == pytest.approx(0.5)


def test_original_defaults() -> None:
    # links: 100/s, burst 1 — one request per 10 ms.
    assert run(Rule(100, 1), [0.0, 0.005, 0.01, 0.0199, 0.02]) == [True, False, True, False, True]
    # downloads: 10/s, burst 5 — five at once, then one per 100 ms.
    assert run(Rule(10, 5), [0.0] * 6 + [0.1, 0.1]) == [True] * 5 + [False, True, False]


def test_sustained_rate_is_the_configured_rate() -> None:
    allowed = run(Rule(rate=5, burst=1), [i * 0.01 for i in range(1000)])  # 10 s of 100 requests/s
    assert sum(allowed) == 50


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="rate"):
        Rule(0, 1)
    with pytest.raises(ValueError, match="rate"):
        Rule(float("inf"), 1)
    with pytest.raises(ValueError, match="burst"):
        Rule(1, 0)


async def test_local_buckets_are_separate_and_refill_with_the_clock() -> None:
    clock = FakeClock()
    buckets = LocalBuckets(clock)
    rule = Rule(rate=1, burst=2)
    assert [(await buckets.check("a", rule)).allowed for _ in range(3)] == [True, True, False]
    assert (await buckets.check("b", rule)).allowed
    clock.now += 1.0
    assert (await buckets.check("a", rule)).allowed
    assert not (await buckets.check("a", rule)).allowed


async def test_local_buckets_forget_full_buckets() -> None:
    clock = FakeClock()
    buckets = LocalBuckets(clock)
    for i in range(2000):
        await buckets.check(f"client-{i}", Rule(rate=100, burst=1))
    clock.now += 1.0
    for _ in range(2000):
        await buckets.check("one", Rule(rate=100, burst=1))
    assert len(buckets) < 1100


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_buckets_fail_open_and_back_off(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    buckets = RedisBuckets(f"redis://127.0.0.1:{_closed_port()}/0", clock=clock)
    try:
        rule = Rule(rate=1, burst=1)
        decisions = [await buckets.check("x", rule) for _ in range(3)]
        assert all(d.allowed for d in decisions)
        assert buckets.failures == 1  # the next checks skip Redis during the back-off
        clock.now += 1.5
        assert (await asyncio.wait_for(buckets.check("x", rule), 5)).allowed
        assert buckets.failures == 2
        warnings = [r for r in caplog.records if "rate limit store" in r.getMessage()]
        assert len(warnings) == 1  # logged once per interval
    finally:
        await buckets.close()


def test_client_ip_trusts_forwarded_for_only_from_trusted_proxies() -> None:
    proxies = parse_networks(["10.0.0.0/8", "fd00::/8"])
    xff = ["203.0.113.9, 198.51.100.7", "10.1.1.1"]
    assert client_ip("192.0.2.1", xff, proxies) == "192.0.2.1"  # the peer is not a proxy
    assert client_ip("10.0.0.2", xff, []) == "10.0.0.2"  # no proxies configured
    assert client_ip("10.0.0.2", xff, proxies) == "198.51.100.7"  # right-most untrusted hop
    assert client_ip("10.0.0.2", ["garbage, 10.1.1.1"], proxies) == "10.1.1.1"
    assert client_ip("10.0.0.2", [], proxies) == "10.0.0.2"
    assert client_ip("fd00::1", ["[2001:db8::5]:4711"], proxies) == "2001:db8::5"
    assert client_ip("10.0.0.2", ["192.0.2.8:1234"], proxies) == "192.0.2.8"
    assert client_ip("::ffff:192.0.2.1", [], proxies) == "192.0.2.1"
    assert client_ip(None, xff, proxies) == "unknown"
    with pytest.raises(ValueError, match="CIDR"):
        parse_networks(["10.0.0.0/33"])


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/links/generate", "links"),
        ("GET", "/download/abc", "downloads"),
        ("PUT", "/v1/files/a", "writes"),
        ("POST", "/v1/files/a", "writes"),
        ("PATCH", "/v1/files/a", "writes"),
        ("DELETE", "/v1/quotas/a", "writes"),
        ("GET", "/v1/directories/", "reads"),
        ("HEAD", "/v1/files/a", "reads"),
        ("GET", "/health", None),
        ("GET", "/metrics", None),
        ("GET", "/internal/v1/blobs/localfs/x", None),
        ("OPTIONS", "/v1/files/a", None),
    ],
)
def test_endpoint_classes(method: str, path: str, expected: str | None) -> None:
    assert endpoint_class(method, path) == expected


def test_config_defaults_and_partial_classes() -> None:
    limits = Config().rate_limits
    assert limits.enabled
    assert (limits.classes.links.rate, limits.classes.links.burst, limits.classes.links.per) == (100, 1, "ip")
    assert (limits.classes.downloads.rate, limits.classes.downloads.burst) == (10, 5)
    assert limits.classes.writes.rate == 0 and limits.classes.reads.rate == 0
    changed = Config.model_validate({"rate_limits": {"classes": {"downloads": {"rate": 3}}}}).rate_limits
    assert (changed.classes.downloads.rate, changed.classes.downloads.burst) == (3, 5)


def test_config_from_environment() -> None:
    config = load_config(None, {"CALLFS_RATE_LIMITS__CLASSES__WRITES__RATE": "50",
                                "CALLFS_RATE_LIMITS__TRUSTED_PROXIES": "[10.0.0.0/8]"})
    assert config.rate_limits.classes.writes.rate == 50
    assert config.rate_limits.classes.writes.per == "key"
    assert config.rate_limits.trusted_proxies == ["10.0.0.0/8"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CLASSES__LINKS__RATE", "-1", "rate_limits.classes.links.rate: Input should be greater than or equal to 0"),
        ("CLASSES__READS__BURST", "0", "rate_limits.classes.reads.burst: Input should be greater than or equal to 1"),
        ("CLASSES__READS__PER", "user", "rate_limits.classes.reads.per"),
        ("CLASSES__UPLOADS__RATE", "1", "rate_limits.classes.uploads: Extra inputs are not permitted"),
        ("TRUSTED_PROXIES", "[10.0.0.0/33]", "'10.0.0.0/33' is not an IP network in CIDR notation"),
    ],
)
def test_config_errors_name_the_field(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as info:
        load_config(None, {f"CALLFS_RATE_LIMITS__{variable}": value})
    assert message in str(info.value)
