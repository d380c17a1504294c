"""What ``shared_limit=`` accepts: a Redis URL, a ``redis.asyncio.Redis`` or a ``RedisCluster``.

A URL is checked here, before any I/O, and never echoed (it may hold a password). The key
namespace is a hash of the API key and base URL under one Redis Cluster hash tag.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

from ..._constants import SHARED_TIMEOUT
from ..._exceptions import ConfigurationError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    #: Either kind of redis-py asyncio client the shared limit runs on.
    AnyRedis: TypeAlias = "Redis | RedisCluster"

__all__ = ["close_redis", "namespace_for", "redis_from"]

# ``+cluster`` (as the ``limits`` library spells it): the URL names one node of a cluster.
_CLUSTER = "+cluster"
_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def redis_from(shared_limit: Any) -> tuple[AnyRedis, bool]:
    """Return the Redis client for ``shared_limit`` and whether the pacer owns (closes) it."""
    try:
        import redis.asyncio as aioredis
        from redis.asyncio.cluster import RedisCluster
    except ImportError:
        raise ConfigurationError(
            "shared_limit needs redis-py: pip install 'hostup-async[redis]'"
        ) from None
    if isinstance(shared_limit, aioredis.Redis | RedisCluster):
        return shared_limit, False
    if not isinstance(shared_limit, str):
        raise TypeError(
            "shared_limit must be a redis:// URL, a redis.asyncio.Redis or a "
            f"redis.asyncio.cluster.RedisCluster, not {type(shared_limit).__name__}"
        )
    scheme = _check_url(shared_limit)
    options: dict[str, Any] = {
        "socket_timeout": SHARED_TIMEOUT,
        "socket_connect_timeout": SHARED_TIMEOUT,
    }
    try:
        if scheme.endswith(_CLUSTER):
            url = scheme.removesuffix(_CLUSTER) + shared_limit[len(scheme) :]
            return RedisCluster.from_url(url, **options), True
        return aioredis.Redis.from_url(shared_limit, retry_on_timeout=False, **options), True
    except (ValueError, TypeError) as exc:
        # redis-py's own parse (query options such as ?ssl_cert_reqs=); its text names
        # the option, not the URL.
        raise ConfigurationError(f"shared_limit is not a usable Redis URL ({exc})") from None


def _check_url(url: str) -> str:
    """Refuse a malformed Redis URL, saying what is wrong without echoing it; return its scheme."""
    if not (url.isascii() and url.isprintable()) or " " in url:
        raise ConfigurationError("shared_limit must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = -1
    if port == -1:  # raised out here: the parser's error (it may quote the URL) stays out
        raise ConfigurationError("shared_limit is not a valid URL (check the port)")
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            "shared_limit must be a redis://, rediss://, unix:// or redis+cluster:// URL "
            "(or a redis.asyncio.Redis or RedisCluster you configured)"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigurationError("shared_limit needs a socket path after unix://")
        return parts.scheme
    if not parts.hostname:
        raise ConfigurationError("shared_limit has no host")
    if port == 0:
        raise ConfigurationError("shared_limit has a port outside 1-65535")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigurationError("shared_limit has a database that is not a number")
    if db not in ("", "0") and parts.scheme.endswith(_CLUSTER):
        raise ConfigurationError("shared_limit: a Redis Cluster has database 0 only")
    return parts.scheme


async def close_redis(redis: AnyRedis) -> None:
    """Close a redis-py client and its connections (``aclose`` from redis-py 5 on)."""
    import redis.asyncio as aioredis

    aclose = getattr(redis, "aclose", None)
    if aclose is not None:
        await aclose()
    elif isinstance(redis, aioredis.Redis):
        await redis.close(close_connection_pool=True)  # redis-py 4 leaves the pool open
    else:
        await redis.close()


def namespace_for(api_key: str, base_url: str) -> str:
    """Return the key prefix for one API key on one API: a hash, never the key itself.

    The braces are a Redis Cluster hash tag: every key of the namespace is in one slot,
    which the script needs.
    """
    digest = hashlib.sha256(f"hostup-async\n{base_url}\n{api_key}".encode()).hexdigest()
    return f"hostup:{{{digest[:24]}}}"
