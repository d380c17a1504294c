"""The shared limit on a real 3-node Redis Cluster the suite starts itself."""

from __future__ import annotations

import asyncio
from typing import cast

from redis.asyncio.cluster import RedisCluster as ClusterClient

from hostup_async import HostUpClient
from hostup_async._pacing.shared import namespace_for
from hostup_async.testing import FakeHostUp

from .conftest import API_KEY, close_redis
from .redis_servers import RedisCluster
from .test_shared_processes import run_workers, wait_until, worker


async def cluster_send_times(cluster: RedisCluster, base_url: str) -> list[float]:
    client = ClusterClient.from_url(cluster.url)
    try:
        key = f"{namespace_for(API_KEY, base_url)}:sends"
        rows = cast("list[tuple[bytes, float]]", await client.zrange(key, 0, -1, withscores=True))
        return sorted(score for _, score in rows)
    finally:
        await close_redis(client)


async def test_a_redis_cluster_client_is_accepted_and_every_key_is_in_one_slot(
    redis_cluster: RedisCluster, fake: FakeHostUp
) -> None:
    redis = ClusterClient.from_url(redis_cluster.url)
    try:
        async with HostUpClient(
            API_KEY, base_url=fake.url, rate_limit=50, shared_limit=redis
        ) as client:
            results = await client.fetch_vms(range(1, 21), usage_log=False)
            client._pacer.on_rate_limited(0.0, 0.01)  # every key exists once a refusal is in
            await asyncio.gather(*client._pacer._tasks)  # type: ignore[attr-defined]
        assert all(r.ok for r in results)
        prefix = namespace_for(API_KEY, fake.url)
        # All five keys on one node (one hash tag, one slot), none on the others.
        counts = [int(n.command("DBSIZE")[1:]) for n in redis_cluster.nodes]
        assert sorted(counts)[-1] >= 5
        assert counts[redis_cluster.nodes.index(redis_cluster.node_for(prefix))] == max(counts)
        for suffix in ("state", "sends", "refusals", "clients"):
            assert await redis.exists(f"{prefix}:{suffix}")
        assert len(await cluster_send_times(redis_cluster, fake.url)) >= 20
    finally:
        await close_redis(redis)


async def test_a_cluster_url_paces_through_the_cluster(
    redis_cluster: RedisCluster, fake: FakeHostUp
) -> None:
    url = redis_cluster.url.replace("redis://", "redis+cluster://")
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=50, shared_limit=url) as client:
        await client.fetch_vms(range(1, 11), usage_log=False)
        assert client._pacer.sharing  # type: ignore[attr-defined]
    assert len(await cluster_send_times(redis_cluster, fake.url)) >= 10  # (and unused leases)


async def test_four_processes_on_a_cluster_whose_node_restarts_mid_run(
    redis_cluster: RedisCluster,
) -> None:
    rate, count = 100, 60  # 2.4 s of sends, the restart after the first 0.8 s
    async with FakeHostUp(api_key=API_KEY) as fake:
        url = redis_cluster.url.replace("redis://", "redis+cluster://")
        node = redis_cluster.node_for(namespace_for(API_KEY, fake.url))
        run = asyncio.ensure_future(
            run_workers([worker(fake, url, rate, 1 + i * 1000, count) for i in range(4)])
        )
        await wait_until(lambda: fake.stats.requests >= 80, run)
        node.stop()  # the node holding the key's slot: down, then back empty
        node.start()
        results = await run
    assert [r["ok"] for r in results] == [count] * 4
    assert [r["failed"] for r in results] == [0] * 4
    for r in results:
        assert r["stderr"].count("Redis is unavailable") <= 1, r["stderr"]
    redis_cluster.wait_ok()
