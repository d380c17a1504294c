"""hostup-async: the asyncio-first Python SDK for HostUp's VPS API."""

import logging

from ._bulk import BulkProgress, VMResult
from ._client import HostUpClient
from ._events import AttemptEvent, ClientStats
from ._exceptions import (
    APIError,
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    DeadlineExceededError,
    DecodeError,
    GatewayTimeoutError,
    HostUpError,
    InvalidVMIDError,
    InvalidVMIDTypeError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ResponseTooLargeError,
    RetryBudgetExhaustedError,
    ServerError,
    TransportError,
)
from ._export import to_builtins
from ._http.answer import decode_billing_cycle, decode_vm_details
from ._http.retry import Backoff, RetryBudget
from ._models import (
    BandwidthUsage,
    BillingCycle,
    Credentials,
    CycleOption,
    Pricing,
    PricingCycle,
    UsageSample,
    VMDetails,
)
from ._secret import SecretStr
from ._version import __version__

# As Python's logging guide asks of libraries: no handler of our own but a NullHandler, so
# an application that configures no logging gets no SDK lines on stderr from logging's
# last resort. Configure logging (or a handler on "hostup_async") to see them.
logging.getLogger("hostup_async").addHandler(logging.NullHandler())

__all__ = [
    "APIError",
    "AttemptEvent",
    "AuthenticationError",
    "Backoff",
    "BandwidthUsage",
    "BillingCycle",
    "BulkProgress",
    "ClientClosedError",
    "ClientStats",
    "ConfigurationError",
    "Credentials",
    "CycleOption",
    "DeadlineExceededError",
    "DecodeError",
    "GatewayTimeoutError",
    "HostUpClient",
    "HostUpError",
    "InvalidVMIDError",
    "InvalidVMIDTypeError",
    "NotFoundError",
    "PermissionDeniedError",
    "Pricing",
    "PricingCycle",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "RetryBudget",
    "RetryBudgetExhaustedError",
    "SecretStr",
    "ServerError",
    "TransportError",
    "UsageSample",
    "VMDetails",
    "VMResult",
    "__version__",
    "decode_billing_cycle",
    "decode_vm_details",
    "to_builtins",
]
