"""The comparison models: hand-written msgspec Structs and pydantic v2 models.

Both describe the same fields with the same types as the SDK's ``VMDetails`` (money as
``Decimal``, hour keys as ``datetime``, lenient numbers), so they do the same work.
The bare Structs are what one would write by hand: no cache, no key normalisation.
The pydantic models also map the API's "no date" spellings and normalise the log to UTC
in time order, as the SDK does.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import msgspec
from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.alias_generators import to_camel

# -- bare msgspec -------------------------------------------------------------------


class BareSample(msgspec.Struct, gc=False):
    data_received: float = 0.0
    data_sent: float = 0.0
    mem_unit: float = 0.0
    probes: float = 0.0
    time: float = 0.0
    uptime: float = 0.0
    maxcpu: float = 0.0
    maxcpu_on: float = 0.0
    cpu: float = 0.0
    maxmem: float = 0.0
    maxmem_on: float = 0.0
    mem: float = 0.0
    maxdisk: float = 0.0
    template: float = 0.0
    ipv4_addresses: float = 0.0


class BareBandwidth(msgspec.Struct):
    data_received: float = 0.0
    data_sent: float = 0.0


class BareCredentials(msgspec.Struct):
    username: str = ""
    password: str | None = None
    rootpassword: str | None = None


class BarePricingCycle(msgspec.Struct, rename={"is_free": "isFree"}):
    id: str = ""
    months: int = 0
    raw: str = ""
    is_free: bool = False


class BarePricing(msgspec.Struct, rename="camel"):
    currency: str = ""
    billing_cycle: BarePricingCycle | None = None
    price_per_cycle: Decimal = Decimal(0)
    base_monthly_cost: Decimal = Decimal(0)
    base_annual_cost: Decimal = Decimal(0)
    addons_monthly_cost: Decimal = Decimal(0)
    addons_annual_cost: Decimal = Decimal(0)
    total_monthly_cost: Decimal = Decimal(0)
    total_annual_cost: Decimal = Decimal(0)
    addons: list[Any] = []


class BareVM(msgspec.Struct):
    id: str = ""
    product_id: str = ""
    product_name: str = ""
    hostname: str = ""
    status: str = ""
    created: str | None = None
    order_id: str = ""
    billingcycle: str = ""
    price: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    firstpayment: Decimal = Decimal(0)
    next_due: str | None = None
    cpu: int = 0
    ram: float = 0.0
    disk: float = 0.0
    bandwidth_limit: float = 0.0
    bandwidth_usage: BareBandwidth | None = None
    usage_log: dict[datetime, BareSample] = {}
    backups: int = 0
    ip_addresses: list[str] = []
    ipv4: str = ""
    ipv6: str = ""
    os: str = ""
    node: str = ""
    uptime: float = 0.0
    vm_status: str = ""
    details: BareCredentials | None = None
    pricing: BarePricing | None = None


class BareEnvelope(msgspec.Struct, rename={"request_id": "requestId"}):
    success: bool = True
    request_id: str | None = None
    data: BareVM | None = None


BARE_DECODER = msgspec.json.Decoder(BareEnvelope, strict=False)

# -- pydantic v2 ----------------------------------------------------------------------

_NO_DATE = {"", "0000-00-00", "0000-00-00 00:00:00"}
_UTC = timezone.utc


class PSample(BaseModel):
    data_received: float = 0.0
    data_sent: float = 0.0
    mem_unit: float = 0.0
    probes: float = 0.0
    time: float = 0.0
    uptime: float = 0.0
    maxcpu: float = 0.0
    maxcpu_on: float = 0.0
    cpu: float = 0.0
    maxmem: float = 0.0
    maxmem_on: float = 0.0
    mem: float = 0.0
    maxdisk: float = 0.0
    template: float = 0.0
    ipv4_addresses: float = 0.0


class PBandwidth(BaseModel):
    data_received: float = 0.0
    data_sent: float = 0.0


class PCredentials(BaseModel):
    username: str = ""
    password: SecretStr | None = None
    rootpassword: SecretStr | None = None


class PPricingCycle(BaseModel):
    id: str = ""
    months: int = 0
    raw: str = ""
    is_free: bool = Field(False, alias="isFree")


class PPricing(BaseModel):
    model_config = ConfigDict(alias_generator=AliasGenerator(validation_alias=to_camel))

    currency: str = ""
    billing_cycle: PPricingCycle | None = None
    price_per_cycle: Decimal = Decimal(0)
    base_monthly_cost: Decimal = Decimal(0)
    base_annual_cost: Decimal = Decimal(0)
    addons_monthly_cost: Decimal = Decimal(0)
    addons_annual_cost: Decimal = Decimal(0)
    total_monthly_cost: Decimal = Decimal(0)
    total_annual_cost: Decimal = Decimal(0)
    addons: list[Any] = []


class PVM(BaseModel):
    id: str = ""
    product_id: str = ""
    product_name: str = ""
    hostname: str = ""
    status: str = ""
    created: date | None = None
    order_id: str = ""
    billingcycle: str = ""
    price: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    firstpayment: Decimal = Decimal(0)
    next_due: date | None = None
    cpu: int = 0
    ram: float = 0.0
    disk: float = 0.0
    bandwidth_limit: float = 0.0
    bandwidth_usage: PBandwidth | None = None
    usage_log: dict[datetime, PSample] = {}
    backups: int = 0
    ip_addresses: list[str] = []
    ipv4: str = ""
    ipv6: str = ""
    os: str = ""
    node: str = ""
    uptime: float = 0.0
    vm_status: str = ""
    details: PCredentials | None = None
    pricing: PPricing | None = None

    @field_validator("created", "next_due", mode="before")
    @classmethod
    def _no_date(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return None if value in _NO_DATE else value[:10]
        return value

    @field_validator("usage_log", mode="after")
    @classmethod
    def _utc_in_order(cls, log: dict[datetime, PSample]) -> dict[datetime, PSample]:
        keys = list(log)
        if all(k.tzinfo is _UTC for k in keys) and keys == sorted(keys):
            return log
        fixed = {
            (k.replace(tzinfo=_UTC) if k.tzinfo is None else k.astimezone(_UTC)): v
            for k, v in log.items()
        }
        return dict(sorted(fixed.items()))


class PEnvelope(BaseModel):
    success: bool = True
    request_id: str | None = Field(None, alias="requestId")
    data: PVM | None = None
