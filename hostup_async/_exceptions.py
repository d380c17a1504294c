"""The errors hostup-async raises; nothing from aiohttp or msgspec escapes the public API.

```
HostUpError
├── ConfigurationError          a client option or the API key is unusable (also a ValueError)
├── InvalidVMIDError            a vmid below 1 or above 2**63 - 1 (also a ValueError)
│   └── InvalidVMIDTypeError    a vmid that is not an int (also a TypeError)
├── ClientClosedError           the client was closed (also a RuntimeError)
├── APIError                    any non-2xx answer, or a 2xx with success: false
│   ├── AuthenticationError         401
│   ├── PermissionDeniedError       403
│   ├── NotFoundError               404
│   ├── RateLimitError              429 (.retry_after)
│   └── ServerError                 5xx
│       └── GatewayTimeoutError     504
├── TransportError              connection refused or reset, body cut short
│   └── RequestTimeoutError         an attempt ran past its timeout
├── DeadlineExceededError       a call's deadline passed, waits included (also a TimeoutError)
├── RetryBudgetExhaustedError   retries suspended after sustained failure (fail fast)
├── ResponseTooLargeError       a body above the client's max_body_size (not retried)
└── DecodeError                 a 2xx body that is not JSON or does not fit the schema
```

Every error pickles and copies with all its fields, so results can cross a process pool.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "ClientClosedError",
    "ConfigurationError",
    "DeadlineExceededError",
    "DecodeError",
    "GatewayTimeoutError",
    "HostUpError",
    "InvalidVMIDError",
    "InvalidVMIDTypeError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "RetryBudgetExhaustedError",
    "ServerError",
    "TransportError",
    "error_for_status",
]


class HostUpError(Exception):
    """Base class of every error this SDK raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls cls(*args), which keyword-only fields break:
        # rebuild from the args and restore every attribute from __dict__ instead.
        return (_rebuild, (type(self), self.args), self.__dict__)


def _rebuild(cls: type[HostUpError], args: tuple[Any, ...]) -> HostUpError:
    """Recreate an error for pickle or copy without calling its ``__init__``."""
    error = cls.__new__(cls)
    error.args = args
    return error


class ConfigurationError(HostUpError, ValueError):
    """A client option or the API key is missing or unusable."""


class InvalidVMIDError(HostUpError, ValueError):
    """A vmid is not an integer from 1 to 2**63 - 1; raised before any request is sent."""


class InvalidVMIDTypeError(InvalidVMIDError, TypeError):
    """A vmid is not an ``int`` (``bool`` included); raised before any request is sent."""


class ClientClosedError(HostUpError, RuntimeError):
    """The client (or the caller's session) was closed; calls in flight end with this too."""


class APIError(HostUpError):
    """The API answered with an error: a non-2xx status, or a 2xx with ``success: false``."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message, status, code, request_id)
        #: HTTP status of the answer.
        self.status = status
        #: Machine-readable code such as ``UNAUTHORIZED``; branch on this, not on ``message``.
        self.code = code
        #: Human-readable text from the server (it may be Swedish).
        self.message = message
        #: The ``requestId`` of the answer, for support requests.
        self.request_id = request_id
        #: The decoded JSON error body, or its text when it was not JSON (an HTML gateway page).
        self.body = body

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        rid = f" (request_id={self.request_id})" if self.request_id else ""
        return f"HTTP {self.status}{code}: {self.message}{rid}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class AuthenticationError(APIError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIError):
    """403: the key may not see this VM."""


class NotFoundError(APIError):
    """404: no VM with this vmid on the account."""


class RateLimitError(APIError):
    """429: too many requests; ``retry_after`` says how long the server asked to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        #: Seconds to wait before the next request, from ``retryAfter`` or ``Retry-After``.
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server or a gateway in front of it failed."""


class GatewayTimeoutError(ServerError):
    """504: a gateway gave up waiting for the API."""


class TransportError(HostUpError):
    """The exchange failed below HTTP: connection refused or reset, or a body cut short."""


class RequestTimeoutError(TransportError):
    """An attempt took longer than its timeout."""


class RetryBudgetExhaustedError(HostUpError):
    """Recent calls failed so often that retries are suspended until calls succeed again."""

    def __init__(self, message: str, *, last_error: BaseException | None = None) -> None:
        super().__init__(message)
        #: The error of the attempt that would have been retried.
        self.last_error = last_error


class DeadlineExceededError(HostUpError, TimeoutError):
    """A call could not finish within its ``deadline``: it ended at once, nothing left queued."""

    def __init__(
        self, message: str, *, deadline: float, last_error: BaseException | None = None
    ) -> None:
        super().__init__(message)
        #: The call's deadline, in seconds.
        self.deadline = deadline
        #: The error of the last attempt, when one was made and failed.
        self.last_error = last_error


class ResponseTooLargeError(HostUpError):
    """An answer's body (decompressed) was larger than the client's ``max_body_size``."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        #: The limit the body went past, in bytes.
        self.limit = limit


class DecodeError(HostUpError):
    """A 2xx body was not valid JSON or did not fit the schema; the message says where."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        #: The ``requestId`` of the answer, when it could be read.
        self.request_id = request_id


_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
    504: GatewayTimeoutError,
}


def error_for_status(status: int) -> type[APIError]:
    """Return the most specific ``APIError`` subclass for an HTTP status."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    return ServerError if status >= 500 else APIError
