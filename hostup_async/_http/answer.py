"""What one attempt got back, and the one place it is read: into an ``Outcome``.

An answer is parsed once (a 2xx body that fails to decode gets one quick look more, to tell
JSON from a mangled body). The ``Outcome`` carries everything after it needs: the result or
the error, whether another try may differ, the server's wait and a spent quota (for the
pacer and the retry policy), and the request id (for logs and hooks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import aiohttp
import msgspec

from .._exceptions import DecodeError, HostUpError, RateLimitError, ResponseTooLargeError
from .._models import (
    BILLING_DECODER,
    DETAILS_DECODER,
    DETAILS_NO_LOG_DECODER,
    BillingCycle,
    Unsuccessful,
    VMDetails,
    json_shape,
    unwrap,
    without_usage_log,
)
from .._secret import Redactor
from .errors import api_error
from .hints import parse_retry_after, quota_spent_wait
from .retry import retryable_status

__all__ = [
    "Answer",
    "Outcome",
    "decode_billing_cycle",
    "decode_vm_details",
    "read_body",
    "settle",
]

T = TypeVar("T")

_CHUNK = 64 * 1024
_NO_HEADERS: Mapping[str, str] = {}


class Answer:
    """What one attempt got back: status, headers, the whole body, and when it was sent."""

    __slots__ = ("body", "headers", "sent_at", "status")

    def __init__(
        self, status: int, headers: Mapping[str, str], body: bytes, sent_at: float
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.sent_at = sent_at


class Outcome(msgspec.Struct, Generic[T]):
    """One attempt, read once: what every later step (pacer, retry policy, report) reads.

    A Struct: built in C, as one is made per attempt on the hot path.
    """

    sent_at: float
    """When the request went, on the pacer's clock."""
    status: int | None = None
    """HTTP status, or ``None`` when no answer came (transport error, timeout)."""
    result: T | None = None
    """The decoded result when the attempt succeeded."""
    error: HostUpError | None = None
    """The HostUp error the attempt ended in, or ``None``."""
    retryable: bool = False
    """Whether another try may end differently."""
    server_wait: float | None = None
    """Seconds the server asked to wait (``retryAfter`` or ``Retry-After``), if it did."""
    quota_wait: float | None = None
    """Seconds until the quota resets, when an accepted answer said none is left."""
    request_id: str | None = None
    """The answer's ``requestId``, when there was one."""


async def read_body(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """Read a response's whole (decompressed) body, ending with an error past ``limit`` bytes.

    The bound holds while the body streams in, so a gzip bomb or an endless chunked body
    costs at most ``limit`` bytes (aiohttp inflates in bounded steps as it is read).
    """
    length = response.content_length
    if length is not None and not response.headers.get("Content-Encoding"):
        if length > limit:
            raise _too_large(what, limit)
        return await response.read()  # the common case: one read, no chunk loop
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_large(what, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str, limit: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"{what}: the response body is larger than max_body_size ({limit} bytes)", limit=limit
    )


def settle(
    answer: Answer,
    decode: Callable[[bytes], T],
    redactor: Redactor | None,
    base_url: str | None = None,
) -> Outcome[T]:
    """Read an answer once: a 2xx body into a result, any other answer into its typed error.

    The API key is masked in the raw body first, so neither a result nor an error can carry
    it whatever field the server echoed it into. ``base_url`` is named in a bare 404's hint.
    """
    body = answer.body if redactor is None else redactor.body(answer.body)
    status = answer.status
    headers = answer.headers
    error: HostUpError
    if 200 <= status < 300:
        retryable = False
        try:
            result = decode(body)
        except Unsuccessful:
            error = api_error(status, body)
        except HostUpError as exc:
            error = exc  # JSON that does not fit the schema: the same on every try
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
            shaped, request_id = json_shape(body)
            if shaped:
                # JSON, but with text that is not UTF-8 or nested past any use: the server
                # will send the same again.
                error = DecodeError(
                    f"response body could not be decoded: {str(exc)[:200]}",
                    request_id=request_id,
                )
            else:
                # Not JSON at all (cut short, a proxy's page): mangled on the way, so
                # another try may be whole.
                error = DecodeError(f"response body is not valid JSON: {str(exc)[:200]}")
                retryable = True
        except (ValueError, TypeError, OverflowError) as exc:
            # Defence in depth: whatever a decoder lets slip, callers see HostUp errors.
            error = DecodeError(f"response body could not be decoded ({type(exc).__name__})")
        else:
            return Outcome(
                answer.sent_at,
                status=status,
                result=result,
                quota_wait=quota_spent_wait(headers),
                request_id=getattr(result, "request_id", None),
            )
        return Outcome(
            answer.sent_at,
            status=status,
            error=error,
            retryable=retryable,
            quota_wait=quota_spent_wait(headers),
            request_id=getattr(error, "request_id", None),
        )
    header = headers.get("Retry-After")
    error = api_error(status, body, header, base_url=base_url)
    if isinstance(error, RateLimitError):
        server_wait, quota_wait = error.retry_after, None
    else:
        server_wait, quota_wait = parse_retry_after(None, header), quota_spent_wait(headers)
    return Outcome(
        answer.sent_at,
        status=status,
        error=error,
        retryable=retryable_status(status),
        server_wait=server_wait,
        quota_wait=quota_wait,
        request_id=error.request_id,
    )


def _details(raw: bytes) -> VMDetails:
    result: VMDetails = unwrap(DETAILS_DECODER, raw)
    return result


def _details_without_log(raw: bytes) -> VMDetails:
    return without_usage_log(unwrap(DETAILS_NO_LOG_DECODER, raw))


def _billing(raw: bytes) -> BillingCycle:
    result: BillingCycle = unwrap(BILLING_DECODER, raw)
    return result


#: The decode for each endpoint's 2xx body, by whether the usage log is wanted.
DETAILS: dict[bool, Callable[[bytes], VMDetails]] = {True: _details, False: _details_without_log}
BILLING: Callable[[bytes], BillingCycle] = _billing


def _decoded(raw: Any, decode: Callable[[bytes], T]) -> T:
    """Read ``raw`` as a 200 answer's body: the result, or raise its HostUp error."""
    outcome = settle(Answer(200, _NO_HEADERS, raw, 0.0), decode, None)
    if outcome.error is not None:
        raise outcome.error
    return outcome.result  # type: ignore[return-value]


def decode_vm_details(
    raw: bytes | bytearray | memoryview | str, *, usage_log: bool = True
) -> VMDetails:
    """Decode a ``/vm/{vmid}/details`` body into ``VMDetails``; ``usage_log=False`` skips the log."""
    return _decoded(raw, DETAILS[usage_log])


def decode_billing_cycle(raw: bytes | bytearray | memoryview | str) -> BillingCycle:
    """Decode a ``/vm/{vmid}/billing-cycle`` body into ``BillingCycle``."""
    return _decoded(raw, BILLING)
