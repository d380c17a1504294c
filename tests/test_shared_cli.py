"""The command line's ``--shared-limit URL`` and ``HOSTUP_SHARED_LIMIT``."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from hostup_async._pacing.shared import namespace_for
from hostup_async.testing import FakeHostUp

from .conftest import API_KEY, RedisCluster, RedisServer, close_redis
from .test_cli import run_cli


async def send_count(redis_url: str, base_url: str) -> int:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        return int(await redis.zcard(f"{namespace_for(API_KEY, base_url)}:sends"))
    finally:
        await close_redis(redis)


@pytest.mark.parametrize("command", [("fetch", "1-5"), ("details", "7"), ("billing", "7")])
async def test_shared_limit_option_paces_through_redis(
    fake: FakeHostUp, redis_server: RedisServer, command: tuple[str, ...]
) -> None:
    code, _, err = await run_cli(
        *command, "--base-url", fake.url, "--shared-limit", redis_server.url
    )
    assert code == 0, err
    assert await send_count(redis_server.url, fake.url) == (5 if command[0] == "fetch" else 1)


async def test_the_environment_variable_is_the_default(
    fake: FakeHostUp, redis_server: RedisServer
) -> None:
    code, _, err = await run_cli(
        "fetch", "1-3", "--base-url", fake.url, env={"HOSTUP_SHARED_LIMIT": redis_server.url}
    )
    assert code == 0, err
    assert await send_count(redis_server.url, fake.url) == 3


async def test_a_malformed_url_is_a_usage_error_that_hides_the_password(fake: FakeHostUp) -> None:
    code, out, err = await run_cli(
        "fetch", "1", "--base-url", fake.url, "--shared-limit", "http://:s3cret@localhost/0"
    )
    assert code == 2
    assert "--shared-limit must be a redis://" in err
    assert "s3cret" not in out + err


async def test_help_never_shows_the_url_from_the_environment() -> None:
    code, out, _ = await run_cli(
        "fetch", "--help", env={"HOSTUP_SHARED_LIMIT": "redis://:s3cret@localhost:6379/0"}
    )
    assert code == 0
    assert "--shared-limit" in out and "s3cret" not in out


async def test_a_cluster_url_paces_through_the_cluster(
    fake: FakeHostUp, redis_cluster: RedisCluster
) -> None:
    url = redis_cluster.url.replace("redis://", "redis+cluster://")
    code, _, err = await run_cli("fetch", "1-4", "--base-url", fake.url, "--shared-limit", url)
    assert code == 0, err
    client = ClusterClient.from_url(redis_cluster.url)
    try:
        assert await client.zcard(f"{namespace_for(API_KEY, fake.url)}:sends") >= 4
    finally:
        await close_redis(client)
