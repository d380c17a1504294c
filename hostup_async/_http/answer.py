"""What one attempt got back, and the one place where it becomes a result or a HostUp error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp

from .._exceptions import DecodeError, HostUpError, ResponseTooLargeError
from .._models import api_error, sniff_status, text_or_none
from .._secret import Redactor

__all__ = ["Answer", "interpret", "read_body"]

T = TypeVar("T")

_CHUNK = 64 * 1024


class Answer:
    """What one attempt got back: status, headers, the whole body, and when it was sent."""

    __slots__ = ("body", "headers", "sent_at", "status")

    def __init__(self, status: int, headers: Any, body: bytes, sent_at: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.sent_at = sent_at


async def read_body(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """Read a response's whole (decompressed) body, ending with an error past ``limit`` bytes.

    The bound holds while the body streams in, so a gzip bomb or an endless chunked body
    costs at most ``limit`` bytes (aiohttp inflates in bounded steps as it is read).
    """
    length = response.content_length
    if length is not None and length > limit and not response.headers.get("Content-Encoding"):
        raise _too_large(what, limit)
    if length is not None and length <= limit and not response.headers.get("Content-Encoding"):
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


def interpret(answer: Answer, decode: Callable[[bytes, int], T], redactor: Redactor) -> T:
    """Decode a 2xx answer into a result, or build the typed error for any other answer.

    The API key is masked in the raw body first, once, so neither a result nor an error
    can carry it whatever field the server echoed it into. Every error made from an answer
    is made here (or by ``api_error``, which this calls), so each is safe to print.
    """
    answer.body = redactor.body(answer.body)
    if 200 <= answer.status < 300:
        try:
            return decode(answer.body, answer.status)
        except HostUpError:
            raise
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            # Defence in depth: whatever a decoder lets slip (such as a UnicodeDecodeError
            # from invalid UTF-8 inside a string), callers only ever see HostUp errors.
            head = sniff_status(answer.body)
            raise DecodeError(
                f"response body could not be decoded ({type(exc).__name__})",
                request_id=text_or_none(head.request_id) if head is not None else None,
            ) from None
    raise api_error(answer.status, answer.body, answer.headers.get("Retry-After"))
