"""Typed models of the API's answers, and the decoders that build them from raw bodies.

Decoding is lenient the way the real API needs: numbers may arrive as ints, floats or
numeric strings, unknown fields are ignored, absent fields take defaults, ``""`` and
``"0000-00-00"`` dates are ``None``, and money is always ``Decimal``.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from ._exceptions import DecodeError
from ._lenient import lenient_convert, loose_decode
from ._secret import SecretStr

__all__ = [
    "BandwidthUsage",
    "BillingCycle",
    "Credentials",
    "CycleOption",
    "Pricing",
    "PricingCycle",
    "UsageSample",
    "Unsuccessful",
    "VMDetails",
    "json_shape",
    "text_or_none",
    "unwrap",
    "without_usage_log",
]

if TYPE_CHECKING:
    _WireDate = date | None
    _WireHour = datetime
else:
    # Read as text because msgspec's date type rejects "" and "0000-00-00", which the API
    # sends for "no date"; VMDetails.__post_init__ turns the text into a date or None.
    _WireDate = str | None
    # Hour keys are read as text and turned into datetimes by VMDetails.__post_init__
    # through a shared cache: every VM of a bulk fetch has the same hours, and parsing
    # (and hashing) a fresh aware datetime per key was a third of a 720-hour decode.
    _WireHour = str

_ZERO = Decimal(0)
_UTC = timezone.utc


class UsageSample(msgspec.Struct, gc=False):
    """One hour of hypervisor metrics; every value is an hourly average, so may be fractional."""

    data_received: float = 0.0
    """Bytes received by the VM's network interfaces."""
    data_sent: float = 0.0
    """Bytes sent by the VM's network interfaces."""
    mem_unit: float = 0.0
    """Memory unit reported by the hypervisor."""
    probes: float = 0.0
    """Number of probes the hypervisor averaged into this sample."""
    time: float = 0.0
    """Sample time as Unix epoch seconds."""
    uptime: float = 0.0
    """VM uptime in seconds."""
    maxcpu: float = 0.0
    """CPU cores available to the VM."""
    maxcpu_on: float = 0.0
    """CPU cores available while the VM was running."""
    cpu: float = 0.0
    """CPU load as a fraction of ``maxcpu`` (0.25 is a quarter of all cores)."""
    maxmem: float = 0.0
    """Memory available to the VM, in bytes."""
    maxmem_on: float = 0.0
    """Memory available while the VM was running, in bytes."""
    mem: float = 0.0
    """Memory in use, in bytes."""
    maxdisk: float = 0.0
    """Disk size, in bytes."""
    template: float = 0.0
    """Whether the VM is a template (1) or not (0)."""
    ipv4_addresses: float = 0.0
    """Number of IPv4 addresses assigned."""


class BandwidthUsage(msgspec.Struct, gc=False):
    """Traffic counted for the current billing period."""

    data_received: float = 0.0
    """Bytes received in the billing period."""
    data_sent: float = 0.0
    """Bytes sent in the billing period."""


class Credentials(msgspec.Struct):
    """Login credentials of a VM; the passwords are ``SecretStr`` and never shown in a repr."""

    username: str = ""
    """Login user name."""
    password: SecretStr | None = None
    """Password of ``username``; call ``.get_secret_value()`` to read it."""
    rootpassword: SecretStr | None = None
    """Root password; call ``.get_secret_value()`` to read it."""


class PricingCycle(msgspec.Struct, rename={"is_free": "isFree"}):
    """The billing cycle a VM's price refers to."""

    id: str = ""
    """Cycle id such as ``m`` (monthly) or ``a`` (annually)."""
    months: int = 0
    """Length of the cycle in months."""
    raw: str = ""
    """The cycle as the billing system names it, such as ``Monthly``."""
    is_free: bool = False
    """Whether the VM is free of charge."""


class Pricing(msgspec.Struct, rename="camel"):
    """What a VM costs, in ``currency``; every amount is a ``Decimal``."""

    currency: str = ""
    """ISO currency code of every amount, such as ``SEK``."""
    billing_cycle: PricingCycle | None = None
    """The cycle ``price_per_cycle`` refers to."""
    price_per_cycle: Decimal = _ZERO
    """Price of one billing cycle."""
    base_monthly_cost: Decimal = _ZERO
    """Monthly cost of the VM without add-ons."""
    base_annual_cost: Decimal = _ZERO
    """Annual cost of the VM without add-ons."""
    addons_monthly_cost: Decimal = _ZERO
    """Monthly cost of the add-ons."""
    addons_annual_cost: Decimal = _ZERO
    """Annual cost of the add-ons."""
    total_monthly_cost: Decimal = _ZERO
    """Monthly cost with add-ons."""
    total_annual_cost: Decimal = _ZERO
    """Annual cost with add-ons."""
    addons: list[Any] = []
    """Add-ons on the VM, as the API lists them."""


class VMDetails(msgspec.Struct):
    """A VM's specs, status, billing, credentials and hourly usage log."""

    id: str = ""
    """Service id of the VM in the billing system."""
    product_id: str = ""
    """Id of the product (plan) the VM was ordered as."""
    product_name: str = ""
    """Name of the product (plan)."""
    hostname: str = ""
    """The VM's host name."""
    status: str = ""
    """Service status, such as ``Active`` or ``Suspended``."""
    created: _WireDate = None
    """Date the service was created, or ``None`` when the API has none."""
    order_id: str = ""
    """Id of the order that created the VM."""
    billingcycle: str = ""
    """Billing cycle name, such as ``Monthly`` or ``Annually``."""
    price: Decimal = _ZERO
    """Recurring price per billing cycle, in ``pricing.currency``."""
    total: Decimal = _ZERO
    """Total recurring amount, in ``pricing.currency``."""
    firstpayment: Decimal = _ZERO
    """Amount of the first payment, in ``pricing.currency``."""
    next_due: _WireDate = None
    """Date the next invoice is due, or ``None`` when the API has none."""
    cpu: int = 0
    """CPU cores."""
    ram: float = 0.0
    """Memory in GB."""
    disk: float = 0.0
    """Disk size in GB."""
    bandwidth_limit: float = 0.0
    """Traffic allowed per billing period. HostUp's reference states no unit (its example is
    ``0``); ``bandwidth_usage`` counts bytes, but this field is not documented to, so check one
    VM against the control panel before comparing the two."""
    bandwidth_usage: BandwidthUsage | None = None
    """Traffic used so far in the billing period."""
    usage_log: dict[_WireHour, UsageSample] = {}
    """Hourly samples keyed by timezone-aware UTC hour (a ``datetime``), in time order."""
    backups: int = 0
    """Number of backups kept."""
    ip_addresses: list[str] = []
    """Every IP address of the VM."""
    ipv4: str = ""
    """Primary IPv4 address."""
    ipv6: str = ""
    """Primary IPv6 address."""
    os: str = ""
    """Operating system image."""
    node: str = ""
    """Hypervisor node the VM runs on."""
    uptime: float = 0.0
    """Seconds since the VM last started."""
    vm_status: str = ""
    """Hypervisor power state, such as ``running`` or ``stopped``."""
    details: Credentials | None = None
    """Login credentials (the wire name ``details`` is kept)."""
    pricing: Pricing | None = None
    """Pricing breakdown."""
    request_id: str | None = None
    """``requestId`` of the answer this VM came from."""

    def __post_init__(self) -> None:
        self.created = _parse_date(self.created)
        self.next_due = _parse_date(self.next_due)
        if self.usage_log:
            self.usage_log = _normalise_usage_log(self.usage_log)

    def __repr__(self) -> str:
        # The usage log is most of a VM (720 hours are hundreds of kilobytes of repr): logs
        # and debuggers get its size instead, and vm.usage_log still holds every sample.
        fields = ", ".join(f"{name}={value!r}" for name, value in self.__rich_repr__())
        return f"VMDetails({fields})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        """Return the fields for rich's pretty printer, the usage log as its size."""
        return [
            (name, _LogSize(len(self.usage_log)) if name == "usage_log" else getattr(self, name))
            for name in self.__struct_fields__
        ]


class _LogSize:
    """Stands in for a usage log in a repr: ``<24 hourly samples>``."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    def __repr__(self) -> str:
        return f"<{self.count} hourly sample{'' if self.count == 1 else 's'}>"


class CycleOption(msgspec.Struct, rename="camel"):
    """One billing cycle a VM can be switched to, with its price."""

    id: str = ""
    """Cycle id such as ``m`` or ``a``."""
    name: str = ""
    """Display name such as ``Monthly``."""
    price: Decimal = _ZERO
    """Price of one cycle."""
    is_current: bool = False
    """Whether this is the VM's current cycle."""
    billing_cycle: str = ""
    """Billing system name of the cycle, such as ``Monthly`` or ``Annually``."""


class BillingCycle(msgspec.Struct, rename="camel"):
    """A VM's current billing cycle and the options it can change to."""

    current: str = ""
    """Id of the current cycle, such as ``m``."""
    current_name: str = ""
    """Name of the current cycle, such as ``Monthly``."""
    cycles: list[CycleOption] = []
    """Every cycle on offer, with prices."""
    product_id: str = ""
    """Product id that an order needs."""
    account_id: str = ""
    """Id of the service in the billing system."""
    request_id: str | None = None
    """``requestId`` of the answer this came from."""


_NO_DATE = frozenset({"", "0000-00-00", "0000-00-00 00:00:00"})


def _parse_date(value: date | str | None) -> date | None:
    """Turn the API's date text into a date; "none" spellings become ``None``."""
    if value is None or isinstance(value, date):
        return value
    text = value.strip()
    if text in _NO_DATE:
        return None
    # The API may send a full timestamp where a date is documented: keep the date part.
    return date.fromisoformat(text[:10])


# Canonical hour text ("2026-01-12T17:00:00Z") -> its UTC datetime. Shared by every decode,
# so the hours of a bulk fetch are parsed once and the VMs share the key objects; cleared
# when full, as a sliding window of hours only ever adds keys.
_HOURS: dict[str, datetime] = {}
_HOURS_MAX = 16_384
_CANONICAL_HOUR = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _hour(key: str | datetime) -> datetime:
    """Return a usage-log key as a UTC datetime: naive stamps are UTC by the API's convention."""
    if isinstance(key, str):
        try:
            stamp = msgspec.convert(key, datetime, strict=False)
        except msgspec.ValidationError:
            raise ValueError(f"usage_log key {key!r:.60} is not an RFC 3339 date-time") from None
    elif isinstance(key, datetime):
        stamp = key
    else:
        raise TypeError(f"usage_log keys must be datetimes, not {type(key).__name__}")
    utc = stamp.replace(tzinfo=_UTC) if stamp.tzinfo is None else stamp.astimezone(_UTC)
    # Only canonical text goes in the cache: its text order is its time order.
    if isinstance(key, str) and _CANONICAL_HOUR.fullmatch(key):
        if len(_HOURS) >= _HOURS_MAX:
            _HOURS.clear()
        _HOURS[key] = utc
    return utc


def _normalise_usage_log(
    log: dict[str, UsageSample] | dict[datetime, UsageSample],
) -> dict[datetime, UsageSample]:
    """Return the log keyed by UTC datetimes in time order, whatever the keys' form and order."""
    hours = _HOURS
    try:
        # The usual case: canonical hour text seen before, sent in time order.
        fixed = {hours[k]: v for k, v in log.items()}  # type: ignore[index]
    except KeyError:
        fixed = {_hour(k): v for k, v in log.items()}
        return dict(sorted(fixed.items())) if not _in_order(list(fixed)) else fixed
    # Canonical text sorts like the time it names, and comparing text is cheap.
    if not _in_order(list(log)):
        return dict(sorted(fixed.items()))
    return fixed


def _in_order(keys: list[Any]) -> bool:
    """Whether ``keys`` are ascending (timsort checks a sorted list in one linear pass)."""
    return keys == sorted(keys)


T = TypeVar("T")


class _Envelope(msgspec.Struct, Generic[T], rename={"request_id": "requestId"}):
    """The wrapper around every answer: success flag, request id, and the data."""

    success: bool = True
    request_id: str | None = None
    data: T | None = None


# A view without the usage log: msgspec skips the unknown key without building it.
_VMDetailsNoLog = msgspec.defstruct(
    "_VMDetailsNoLog",
    [
        (f.name, f.type, msgspec.field(default=f.default, default_factory=f.default_factory))  # type: ignore[call-overload]
        for f in msgspec.structs.fields(VMDetails)
        if f.name != "usage_log"
    ],
)


def _secret_hook(type_: type, obj: Any) -> Any:
    """Build ``SecretStr`` values, the one custom type msgspec does not know natively."""
    if type_ is SecretStr and isinstance(obj, (str, int, float)):
        return SecretStr(str(obj))
    raise ValueError(f"expected a string, got {type(obj).__name__}")


DETAILS_DECODER = msgspec.json.Decoder(_Envelope[VMDetails], strict=False, dec_hook=_secret_hook)
DETAILS_NO_LOG_DECODER = msgspec.json.Decoder(
    _Envelope[_VMDetailsNoLog],  # type: ignore[valid-type]
    strict=False,
    dec_hook=_secret_hook,
)
BILLING_DECODER = msgspec.json.Decoder(_Envelope[BillingCycle], strict=False)


# Bounds on the server's text kept in an error: a message, and a code or request id. A
# hostile server may send megabytes of either.
_MAX_TEXT = 500
_MAX_FIELD = 200


def text_or_none(value: Any, limit: int = _MAX_FIELD) -> str | None:
    """Return a body field as text of at most ``limit`` characters, or ``None`` when absent.

    A field that is not a string (an object, a 400-digit number) is shown as JSON; one
    that cannot be shown at all (nested too deep to encode) is named by its type.
    """
    if value is None:
        return None
    text: str
    if isinstance(value, str):
        text = value
    else:
        try:
            text = msgspec.json.encode(value).decode()
        except (msgspec.EncodeError, TypeError, ValueError, RecursionError, OverflowError):
            text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


class _RequestId(msgspec.Struct, rename={"request_id": "requestId"}):
    """Only the request id of a body: the rest is skipped unread."""

    request_id: Any = None


_REQUEST_ID = msgspec.json.Decoder(_RequestId)


def json_shape(raw: bytes | bytearray | memoryview | str) -> tuple[bool, str | None]:
    """For a body that failed to decode: whether it is JSON at all, and its ``requestId``.

    Only the request id is read; msgspec skips the rest without checking its text.
    """
    try:
        return True, text_or_none(_REQUEST_ID.decode(raw).request_id)
    except (msgspec.ValidationError, UnicodeDecodeError):
        return True, None
    except (msgspec.DecodeError, ValueError, RecursionError):
        return False, None


class Unsuccessful(Exception):
    """An envelope that says ``success: false``: the HTTP layer turns the body into an ``APIError``."""


def _decode_error(message: str, request_id: Any) -> DecodeError:
    """Build the error for a 2xx body that does not decode; its text is cut to a bound."""
    if len(message) > _MAX_TEXT:
        message = message[:_MAX_TEXT] + "..."
    return DecodeError(message, request_id=text_or_none(request_id))


def unwrap(decoder: msgspec.json.Decoder[Any], raw: bytes | bytearray | memoryview | str) -> Any:
    """Decode an envelope and return its data, with the answer's request id set on it.

    A body the strict decode rejects is decoded again, leniently. Raises ``Unsuccessful``
    for ``success: false``, ``DecodeError`` for JSON that does not fit the schema, and lets
    msgspec's ``DecodeError`` (and ``UnicodeDecodeError``, ``RecursionError``) through for a
    body that is not JSON at all, which the caller may retry.
    """
    try:
        envelope = decoder.decode(raw)
    except msgspec.ValidationError as strict:
        try:
            loose = loose_decode(raw)  # the JSON is valid: only its shape was wrong
        except (msgspec.DecodeError, RecursionError):
            raise _decode_error(f"response body does not fit the schema: {strict}", None) from None
        fields = loose if isinstance(loose, dict) else {}
        if fields.get("success") is False:
            raise Unsuccessful from None
        try:
            envelope = lenient_convert(loose, decoder.type, _secret_hook)
        except (msgspec.DecodeError, ValueError, TypeError, RecursionError) as exc:
            raise _decode_error(
                f"response body does not fit the schema: {exc}", fields.get("requestId")
            ) from None
    if not envelope.success:
        raise Unsuccessful
    if envelope.data is None:
        raise DecodeError(
            "response body has no `data` object - at `$.data`",
            request_id=text_or_none(envelope.request_id),
        )
    data = envelope.data
    data.request_id = envelope.request_id
    return data


def without_usage_log(view: Any) -> VMDetails:
    """Turn a details view decoded without its usage log into a ``VMDetails``."""
    try:
        return VMDetails(**msgspec.structs.asdict(view))
    except (TypeError, ValueError) as exc:
        # The view holds the dates as text, so they are checked here, not by msgspec.
        raise DecodeError(
            f"response body does not fit the schema: {exc} - at `$.data`"[:_MAX_TEXT],
            request_id=text_or_none(view.request_id),
        ) from None
