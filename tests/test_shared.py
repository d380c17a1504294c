"""The shared rate limit in one process: configuration, Redis keys, the shared pause, cancellation, fallback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from hostup_async import ClientStats, ConfigurationError, HostUpClient
from hostup_async._pacing import PauseTooLong
from hostup_async._pacing.shared import SharedPacer, namespace_for
from hostup_async.testing import FakeHostUp

from .conftest import (
    API_KEY,
    RedisServer,
    close_redis,
    free_port,
    most_in_one_second,
    scores,
)

# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://:s3cret@127.0.0.1:6379/0",  # not a Redis scheme
        "redis://:s3cret@127.0.0.1:notaport/0",
        "redis://:s3cret@127.0.0.1:99999/0",
        "redis://:s3cret@/0",  # no host
        "redis://:s3cret@127.0.0.1:6379/zero",
        "redis://:s3cret@127.0.0.1:6379/0\r\nX",
        "unix://",
        "",
    ],
)
def test_a_malformed_url_is_a_configuration_error_that_hides_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        HostUpClient(API_KEY, shared_limit=url)
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_shared_limit_takes_a_url_or_a_redis_client_only() -> None:
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        HostUpClient(API_KEY, shared_limit=6379)  # type: ignore[arg-type]


async def test_a_callers_redis_client_is_used_and_left_open(
    redis_server: RedisServer, fake: FakeHostUp
) -> None:
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        async with HostUpClient(API_KEY, base_url=fake.url, shared_limit=redis) as client:
            await client.get_vm_details(1)
        assert await redis.ping()  # still ours to use
        assert await redis.exists(f"{namespace_for(API_KEY, fake.url)}:sends")
    finally:
        await close_redis(redis)


# -- what goes into Redis ---------------------------------------------------------------


async def test_keys_are_hashed_tagged_and_expire(
    redis_server: RedisServer, fake: FakeHostUp
) -> None:
    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=50, shared_limit=redis_server.url
    ) as client:
        await client.fetch_vms(range(1, 21))
        client._pacer.on_rate_limited(0.0, 0.01)  # every key exists once a refusal is in
        await asyncio.gather(*client._pacer._tasks)  # type: ignore[attr-defined]
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        prefix = namespace_for(API_KEY, fake.url)
        keys = [k async for k in redis.scan_iter(f"{prefix}*")]
        names = sorted(k.removeprefix(prefix + ":").split(":")[0] for k in keys)
        assert names == ["clients", "refusals", "reply", "sends", "state"]
        for key in keys:
            assert API_KEY not in key
            assert key.startswith("hostup:{") and "}" in key  # one hash tag: one cluster slot
            assert 0 < await redis.pttl(key) <= 200_000  # every key expires
    finally:
        await close_redis(redis)


async def test_clients_on_one_key_share_the_rate_and_other_keys_do_not(
    redis_server: RedisServer,
) -> None:
    rate = 30
    async with FakeHostUp(api_key=API_KEY) as fake:
        clients = [
            HostUpClient(key, base_url=fake.url, rate_limit=rate, shared_limit=redis_server.url)
            for key in (API_KEY, API_KEY, API_KEY, "another-key")
        ]
        try:
            results = await asyncio.gather(
                *(
                    c.fetch_vms(range(1 + i * 100, 31 + i * 100), usage_log=False)
                    for i, c in enumerate(clients)
                )
            )
        finally:
            for c in clients:
                await c.aclose()
        namespace = namespace_for(API_KEY, fake.url)
        other = namespace_for("another-key", fake.url)
    assert all(r.ok for batch in results[:3] for r in batch)
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        times = await scores(redis, f"{namespace}:sends")
        assert len(times) >= 90  # (and any slots leased ahead that went unused)
        assert most_in_one_second(times) <= rate
        assert 30 <= await redis.zcard(f"{other}:sends") < 90  # its own, not counted with ours
    finally:
        await close_redis(redis)


async def test_the_round_trips_to_redis_are_counted_in_the_stats(
    redis_server: RedisServer, fake: FakeHostUp
) -> None:
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=50) as alone:
        await alone.fetch_vms(range(1, 11), usage_log=False)
    assert alone.stats.shared_round_trips == 0
    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=50, shared_limit=redis_server.url
    ) as shared:
        await shared.fetch_vms(range(1, 21), usage_log=False)
    assert 1 <= shared.stats.shared_round_trips <= shared.stats.requests


# -- leases ------------------------------------------------------------------------------


async def test_a_client_slower_than_its_rate_leases_what_it_can_use(
    redis_server: RedisServer,
) -> None:
    # 1,000 req/s allowed, about 50 taken: a lease of 1,000 req/s' worth of slots, due
    # within 50 ms, would go stale almost whole and cost a round trip every few sends.
    # Sized by the client's own pace, a lease lasts it many sends and little is dropped.
    ns = namespace_for(API_KEY, "http://slow.example")
    redis = aioredis.Redis.from_url(redis_server.url)
    stats = ClientStats()
    pacer = SharedPacer(redis, namespace=ns, rate_limit=1000.0, stats=stats)

    async def send(n: int) -> None:
        for _ in range(n):
            if pacer.try_acquire() is None:
                await pacer.acquire()
            await asyncio.sleep(0.02)

    try:
        await send(20)  # the client's pace is measured meanwhile
        trips, dropped = stats.shared_round_trips, pacer._slots.dropped
        await send(40)
        # Measured: 4 round trips and none dropped; before, 13 and 378 (9 per send). The
        # bounds leave room for a busy machine's stalls, which make any lease go stale.
        assert stats.shared_round_trips - trips <= 20
        assert pacer._slots.dropped - dropped <= 40
    finally:
        await pacer.aclose()
        await close_redis(redis)


async def test_a_lost_state_does_not_make_a_client_forget_the_others(
    redis_server: RedisServer,
) -> None:
    # After a loss the script counts the clients afresh: the first to call is alone there.
    # Were Redis to go away then, that client would pace alone at the whole rate.
    ns = namespace_for(API_KEY, "http://live.example")
    redis = aioredis.Redis.from_url(redis_server.url)
    pacers = [SharedPacer(redis, namespace=ns, rate_limit=100.0, lease_ahead=False)]
    pacers += [SharedPacer(redis, namespace=ns, rate_limit=100.0) for _ in range(3)]
    try:
        for pacer in reversed(pacers):
            await pacer.acquire()
        assert pacers[0]._live == 4
        await redis.delete(*(f"{ns}:{key}" for key in ("state", "sends", "clients")))
        await pacers[0].acquire()  # a round trip: the script now counts one client
        assert pacers[0]._live == 4  # the others count for as long as the script would
    finally:
        for pacer in pacers:
            await pacer.aclose()
        await close_redis(redis)


# -- the shared pause -------------------------------------------------------------------


async def test_a_refusal_one_client_got_pauses_another(redis_server: RedisServer) -> None:
    ns = namespace_for(API_KEY, "http://pause.example")
    redis = aioredis.Redis.from_url(redis_server.url)
    one = SharedPacer(redis, namespace=ns, rate_limit=10.0)
    other = SharedPacer(redis, namespace=ns, rate_limit=10.0)
    try:
        sent = await one.acquire()
        one.on_rate_limited(sent, 30.0)
        assert one.paused_for() > 29  # at once, before Redis has heard of it
        await asyncio.gather(*one._tasks)
        with pytest.raises(PauseTooLong) as caught:
            await other.acquire(max_pause=5.0)
        assert 25 < caught.value.seconds <= 30
        assert other.paused_for() > 25  # and it keeps to it without asking again
    finally:
        await one.aclose()
        await other.aclose()
        await close_redis(redis)


# -- cancellation -----------------------------------------------------------------------


async def test_a_cancelled_waiters_slot_goes_to_the_next_one(redis_server: RedisServer) -> None:
    ns = namespace_for(API_KEY, "http://cancel.example")
    redis = aioredis.Redis.from_url(redis_server.url)
    pacer = SharedPacer(redis, namespace=ns, rate_limit=1.0)  # one send per second
    try:
        await pacer.acquire()
        sleeper = asyncio.ensure_future(pacer.acquire())  # gets the slot 1 s on, and sleeps
        await asyncio.sleep(0)  # it queues and starts the round trip
        assert pacer._dispatcher is not None
        await pacer._dispatcher  # the reply is in: the sleeper holds its slot
        sleeper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeper
        assert len(pacer._slots) == 1
        reserved = await redis.zcard(f"{ns}:sends")
        sent = await pacer.acquire()  # the cancelled one's slot: no new reservation
        assert await redis.zcard(f"{ns}:sends") == reserved == 2
        assert sent == max(await scores(redis, f"{ns}:sends"))
    finally:
        await pacer.aclose()
        await close_redis(redis)


async def test_cancelling_mid_round_trip_loses_no_slot_and_crosses_no_reply(
    redis_server: RedisServer,
) -> None:
    ns = namespace_for(API_KEY, "http://cancel-trip.example")
    redis = aioredis.Redis.from_url(redis_server.url)
    pacer = SharedPacer(redis, namespace=ns, rate_limit=1000.0)
    try:
        granted = 0
        for _ in range(20):
            waiters = [asyncio.ensure_future(pacer.acquire()) for _ in range(8)]
            await asyncio.sleep(0)  # queued; the round trip is on its way
            for w in waiters[::2]:
                w.cancel()  # (one that already took a spare slot and finished stays done)
            await asyncio.gather(*waiters, return_exceptions=True)
            granted += sum(not w.cancelled() for w in waiters)
            assert pacer._dispatcher is not None
            await pacer._dispatcher
        # Every slot Redis handed out went to a waiter, is kept for the next one, or went
        # stale unused (counted): none vanished.
        assert (
            await redis.zcard(f"{ns}:sends") == granted + len(pacer._slots) + pacer._slots.dropped
        )
        assert await redis.set("probe", "42") and await redis.get("probe") == b"42"
    finally:
        await pacer.aclose()
        await close_redis(redis)


# -- when Redis is away -----------------------------------------------------------------


async def test_an_unreachable_redis_never_fails_a_call(
    fake: FakeHostUp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hostup_async")
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"  # nothing listens there
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=50, shared_limit=url) as client:
        results = await client.fetch_vms(range(1, 31), usage_log=False)
        assert client.stats.shared_fallback > 0
        assert isinstance(client._pacer, SharedPacer) and not client._pacer.sharing
    assert all(r.ok for r in results)
    warnings = [
        r for r in caplog.records if r.name == "hostup_async" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1  # one per outage, not one per call
    assert "s3cret" not in warnings[0].getMessage() and "unavailable" in warnings[0].getMessage()


async def test_sharing_resumes_when_redis_is_back(
    own_redis: RedisServer, fake: FakeHostUp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hostup_async")
    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=200, shared_limit=own_redis.url
    ) as client:
        pacer = client._pacer
        assert isinstance(pacer, SharedPacer)
        await client.fetch_vms(range(1, 11), usage_log=False)
        own_redis.stop()
        await client.fetch_vms(range(11, 81), usage_log=False)  # more than the slots leased
        assert not pacer.sharing
        own_redis.start()
        while not pacer.sharing:  # the reconnect backoff: wait for it, asserting nothing on time
            await client.get_vm_details(1, usage_log=False)
            await asyncio.sleep(0.05)
        away = client.stats.shared_fallback
        assert away > 0
        await client.fetch_vms(range(21, 31), usage_log=False)
        assert client.stats.shared_fallback == away  # sharing again: no more time alone
    redis = aioredis.Redis.from_url(own_redis.url)
    try:
        assert await redis.zcard(f"{namespace_for(API_KEY, fake.url)}:sends") >= 10
    finally:
        await close_redis(redis)
    messages = [r.getMessage() for r in caplog.records if r.name == "hostup_async"]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("Redis is back" in m for m in messages) == 1


async def test_a_read_only_redis_is_paced_around_sharing_resumes_and_a_relapse_warns_once(
    own_redis: RedisServer, fake: FakeHostUp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hostup_async")
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        async with HostUpClient(
            API_KEY, base_url=fake.url, rate_limit=200, shared_limit=own_redis.url
        ) as client:
            pacer = client._pacer
            assert isinstance(pacer, SharedPacer)
            await client.fetch_vms(range(1, 11), usage_log=False)
            for _ in range(2):  # away, back, and away again within SHARED_REJOIN (2 s)
                await admin.replicaof("127.0.0.1", free_port())  # read-only
                results = await client.fetch_vms(range(11, 81), usage_log=False)
                assert all(r.ok for r in results) and not pacer.sharing
                await admin.replicaof("NO", "ONE")
                while not pacer.sharing:  # the reconnect's next try: no time asserted
                    await client.get_vm_details(1, usage_log=False)
                    await asyncio.sleep(0.05)
    finally:
        await close_redis(admin)
    records = [r for r in caplog.records if r.name == "hostup_async"]
    away = [r for r in records if "Redis is unavailable" in r.getMessage()]
    # One WARNING an outage: failing again so soon after coming back is the same one.
    assert [r.levelno for r in away] == [logging.WARNING, logging.INFO]
    assert "again" in away[1].getMessage()
    assert sum("Redis is back" in r.getMessage() for r in records) == 2


async def test_a_redis_that_stops_answering_is_paced_around(
    own_redis: RedisServer, fake: FakeHostUp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hostup_async")
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        async with HostUpClient(
            API_KEY, base_url=fake.url, rate_limit=200, shared_limit=own_redis.url
        ) as client:
            await client.fetch_vms(range(1, 11), usage_log=False)
            await admin.client_pause(3000)  # up, but answers nobody for 3 s
            results = await client.fetch_vms(range(11, 81), usage_log=False)
            assert all(r.ok for r in results)
            assert client.stats.shared_fallback > 0
    finally:
        await close_redis(admin)
    messages = [r.getMessage() for r in caplog.records if r.name == "hostup_async"]
    assert sum("Redis is unavailable" in m for m in messages) == 1


# -- at most once ------------------------------------------------------------------------


async def test_a_reservation_sent_again_reserves_nothing_more(redis_server: RedisServer) -> None:
    # What a client library's retry sends when a reply was lost after the script ran: the
    # same EVALSHA with the same arguments, request id included.
    ns = namespace_for(API_KEY, "http://retry.example")
    redis = aioredis.Redis.from_url(redis_server.url)
    pacer = SharedPacer(redis, namespace=ns, rate_limit=100.0, lease_ahead=False)
    try:
        script = pacer._script
        argv = ["reserve", "", script._client_id, "req-1", "", "120", "0.75", "62", "10"]
        argv += ["5", "0", "0.05", "0.5", "100.0", "0.1", "0.005", "0"]
        first = await script._script(keys=script._keys, args=argv)
        again = await script._script(keys=script._keys, args=argv)
        assert again == first and len(first[5].split()) == 5  # five send times, once
        assert await redis.zcard(f"{ns}:sends") == 5
        argv[3] = "req-2"  # a new request reserves anew
        await script._script(keys=script._keys, args=argv)
        assert await redis.zcard(f"{ns}:sends") == 10
    finally:
        await pacer.aclose()
        await close_redis(redis)


REDIS_PY_5 = int(redis.__version__.split(".")[0]) >= 5


# RESP3 came with redis-py 5: with 4.x there is no such client to test.
REPLY_SETTINGS = {"decoded": {"decode_responses": True}} | (
    {"resp3": {"protocol": 3, "decode_responses": True}} if REDIS_PY_5 else {}
)


@pytest.mark.parametrize("options", list(REPLY_SETTINGS.values()), ids=list(REPLY_SETTINGS))
async def test_a_callers_client_with_other_reply_settings_shares_alike(
    redis_server: RedisServer, fake: FakeHostUp, options: dict[str, Any]
) -> None:
    redis = aioredis.Redis.from_url(redis_server.url, **options)
    try:
        async with HostUpClient(
            API_KEY, base_url=fake.url, rate_limit=50, shared_limit=redis
        ) as client:
            results = await client.fetch_vms(range(1, 11), usage_log=False)
            sent = await client._pacer.acquire(60.0)
            client._pacer.on_rate_limited(sent, 0.01)  # a decision stored and read back
            await asyncio.gather(*client._pacer._tasks)  # type: ignore[attr-defined]
            assert client._pacer.sharing  # type: ignore[attr-defined]
            assert client._pacer._policy.lowered == 1  # type: ignore[attr-defined]
        assert all(r.ok for r in results)
    finally:
        await close_redis(redis)
