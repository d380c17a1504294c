"""Defaults users can change and the tuning values the docs describe, listed together.

Every value here is a default of a public setting or a figure the docs quote. Limits that
are part of one module's own mechanics (the read chunk, a decoder's depth limit, a pacer's
refresh interval) are named constants at the top of that module, next to the code whose
behaviour they shape.
"""

from __future__ import annotations

__all__ = [
    "ADAPTIVE_BACKOFF",
    "ADAPTIVE_MIN_RATE",
    "ADAPTIVE_MIN_SAMPLE",
    "ADAPTIVE_PROBE",
    "ADAPTIVE_PROBE_GAIN",
    "ADAPTIVE_PROBE_STEP",
    "ADAPTIVE_RECOVER",
    "ADAPTIVE_REST",
    "ADAPTIVE_REST_TIME",
    "ADAPTIVE_THIN_BACKOFF",
    "API_KEY_ENV",
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DECODE_OFF_LOOP_SIZE",
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_RATE_LIMIT",
    "DEFAULT_TIMEOUT",
    "MAX_CONCURRENCY_LIMIT",
    "MAX_VMID",
    "PAUSE_JITTER",
    "PAUSE_JITTER_CAP",
    "RATE_BURST_SECONDS",
    "RATE_LIMIT_PAUSE",
    "RETRYABLE_STATUSES",
    "SHARED_BACKOFF_CAP",
    "SHARED_LEASE_HORIZON",
    "SHARED_LIMIT_ENV",
    "SHARED_LEASE_MAX",
    "SHARED_REJOIN",
    "SHARED_RESERVE_AHEAD",
    "SHARED_TIMEOUT",
]

#: The production API root; endpoint paths are appended to it.
DEFAULT_BASE_URL = "https://cloud.hostup.se/api"

#: Environment variable read when no ``api_key`` is passed.
API_KEY_ENV = "HOSTUP_API_KEY"

#: Environment variable read when no ``base_url`` is passed (``DEFAULT_BASE_URL`` when unset).
BASE_URL_ENV = "HOSTUP_BASE_URL"

#: Requests per second for a whole client. HostUp publishes no figure, so this is
#: deliberately modest; raise it when you know your account's limit.
DEFAULT_RATE_LIMIT = 10.0

#: Requests in flight at once for a whole client (also the connection pool size).
DEFAULT_MAX_CONCURRENCY = 10

#: Highest ``max_concurrency`` a client accepts: far more connections than a machine's file
#: descriptors allow gain nothing, and a bulk fetch's look-ahead window scales with it.
MAX_CONCURRENCY_LIMIT = 10_000

#: Largest vmid sent: the API's ids are signed 64-bit integers, so a larger one is a bug.
MAX_VMID = 2**63 - 1

#: Most bytes of one answer's body, after decompression, that a client reads by default.
#: A year of hourly usage samples is about 3 MB; a larger body ends the attempt with
#: ``ResponseTooLargeError`` while it streams in (a gzip bomb is stopped the same way).
DEFAULT_MAX_BODY_SIZE = 32 * 1024 * 1024

#: Bodies of at least this many bytes are decoded in a worker thread, so decoding them
#: does not hold up the event loop (a month of usage log is a few hundred kilobytes).
DECODE_OFF_LOOP_SIZE = 1024 * 1024

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

#: The rate limiter's burst, in seconds of rate: after an idle spell this many seconds'
#: worth of requests may go at once (at least one). Kept short because a burst on top of
#: a full second of steady rate is exactly what trips a server's sliding window.
RATE_BURST_SECONDS = 0.1

#: Seconds the whole client pauses after a 429 that gave no ``retryAfter``.
RATE_LIMIT_PAUSE = 1.0

#: Share of a client-wide pause by which each waiting request wakes later, at random,
#: so paused requests do not all go at the instant the pause ends.
PAUSE_JITTER = 0.2

#: Most seconds of that spread, however long the pause.
PAUSE_JITTER_CAP = 2.0

#: Adaptive rate limiting: after a refusal backed by enough evidence, the rate drops to this
#: share of what the server was measured to accept (AWS adaptive mode uses 0.7 of what it
#: sent; the measure here is of what the server took, so a small margin keeps throughput).
ADAPTIVE_BACKOFF = 0.95

#: After a refusal backed by too little evidence (a thin or slow sample: a lower bound of
#: the server's limit, not the limit), the rate drops to this share of the rate in force.
ADAPTIVE_THIN_BACKOFF = 0.7

#: Fewest requests the server must have taken in its window for a refusal to measure its
#: limit (fewer, and also fewer than the rate in force allowed, is a thin sample).
ADAPTIVE_MIN_SAMPLE = 16

#: The adaptive rate never drops below this many requests per second; ``retryAfter``
#: pauses still hold the client back further when the server asks for it.
ADAPTIVE_MIN_RATE = 0.5

#: Share of the measured rate the adaptive rate rests at after growing back: just below
#: the server's limit, where timing jitter on the way does not trip it.
ADAPTIVE_REST = 0.99

#: Seconds after a refusal's pause in which the rate climbs back to the rate the server
#: held, however far it fell.
ADAPTIVE_RECOVER = 2.0

#: Seconds the rate then rests just below a measured limit before probing above it (none
#: after a thin sample: nothing was measured to rest at).
ADAPTIVE_REST_TIME = 8.0

#: Seconds of probing after the plateau by which the rate has grown by the larger of
#: ``ADAPTIVE_PROBE_GAIN`` times the rate it rested at and ``ADAPTIVE_PROBE_STEP`` req/s
#: (a cubic: gently at first, 8 times as much after twice as long).
ADAPTIVE_PROBE = 8.0

#: How far the probe has grown after ``ADAPTIVE_PROBE`` seconds, as a share of the resting
#: rate: 1.5 finds a doubled limit within 20 s of a refusal.
ADAPTIVE_PROBE_GAIN = 1.5

#: Requests per second the probe has grown by after ``ADAPTIVE_PROBE`` seconds at least,
#: whatever the rate. Below ``ADAPTIVE_PROBE_STEP / ADAPTIVE_PROBE_GAIN`` req/s (40) every
#: client climbs by as much, big or small: clients sharing a key each give back in
#: proportion to their rate and climb by the same, so their shares converge (Chiu-Jain);
#: growth in proportion to the rate would keep the big client big.
ADAPTIVE_PROBE_STEP = 60.0

#: Longest wait a server's retry hint may impose, in seconds, unless the client or the
#: call says otherwise: a hint above it ends the call at once with ``RateLimitError``.
DEFAULT_MAX_RETRY_AFTER = 60.0

#: Shared rate limit (``shared_limit``): seconds a Redis round trip may take before the
#: client stops waiting and paces locally until Redis answers again.
SHARED_TIMEOUT = 1.0

#: Most send slots one Redis round trip reserves for one client: for its queued waiters,
#: and ahead of them for sends to come (those due within ``SHARED_LEASE_HORIZON``).
SHARED_LEASE_MAX = 32

#: Slots leased ahead are due within this many seconds of the lease: it bounds what a
#: client may still send after another client's 429 paused the key, before it hears.
SHARED_LEASE_HORIZON = 0.05

#: Longest wait between two tries to reach Redis again, in seconds (backoff from 0.1 s).
#: Short, because until every client is back some pace alone while others share again.
SHARED_BACKOFF_CAP = 1.0

#: Most seconds ahead of now a send time is reserved: it bounds how long sends reserved
#: before Redis lost its state (or went away) may still go, so that nothing new is
#: reserved (or paced alone) until they have.
SHARED_RESERVE_AHEAD = 0.5

#: Seconds a client that shares again after an outage keeps to its share of the rate:
#: longer than the others need to notice Redis is back (their backoff is at most 1.5 s).
SHARED_REJOIN = 2.0

#: Environment variable the CLI reads for ``--shared-limit`` (a Redis URL).
SHARED_LIMIT_ENV = "HOSTUP_SHARED_LIMIT"
