"""Defaults and tuning values, in one place so they are easy to find and document."""

from __future__ import annotations

__all__ = [
    "API_KEY_ENV",
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_TIMEOUT",
    "RETRYABLE_STATUSES",
]

#: The production API root; endpoint paths are appended to it.
DEFAULT_BASE_URL = "https://cloud.hostup.se/api"

#: Environment variable read when no ``api_key`` is passed.
API_KEY_ENV = "HOSTUP_API_KEY"

#: Requests per second for a whole client. HostUp publishes no figure, so this is
#: deliberately modest; raise it when you know your account's limit.
DEFAULT_RATE_LIMIT = 10.0

#: Requests in flight at once for a whole client (also the connection pool size).
DEFAULT_MAX_CONCURRENCY = 10

#: Seconds allowed for one attempt, from sending the request to reading the whole body.
DEFAULT_TIMEOUT = 30.0

#: Retries after the first attempt, so a call makes at most ``1 + DEFAULT_MAX_RETRIES`` tries.
DEFAULT_MAX_RETRIES = 3

#: First backoff ceiling in seconds; it doubles with every attempt (full jitter).
BACKOFF_BASE = 0.5

#: Highest backoff ceiling in seconds, whatever the attempt number.
BACKOFF_CAP = 20.0

#: Statuses worth another try: rate limiting and the gateway/server errors that pass.
#: 500 is included because these endpoints are idempotent reads and real gateways
#: answer 500 for transient upstream faults.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
