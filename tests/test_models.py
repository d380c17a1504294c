from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostup_async import (
    APIError,
    BillingCycle,
    Credentials,
    DecodeError,
    SecretStr,
    UsageSample,
    VMDetails,
    decode_billing_cycle,
    decode_vm_details,
)

from .conftest import api_data


def envelope(data: Any, request_id: str = "req-1") -> bytes:
    return msgspec.json.encode(
        {
            "success": True,
            "timestamp": "2026-02-10T00:00:00.000Z",
            "requestId": request_id,
            "data": data,
        }
    )


def test_documented_details_example_decodes_every_field() -> None:
    data = api_data("/vm/10415/details")
    data["usage_log"] = {
        "2026-01-12T17:00:00Z": {"cpu": 0.25, "mem": 1.5e9, "data_sent": 12.5, "time": 1768237200},
    }
    vm = decode_vm_details(envelope(data, "abc"))
    assert vm.request_id == "abc"
    assert vm.hostname == "vm10415.example.net"
    assert vm.cpu == 8
    assert isinstance(vm.price, Decimal)
    assert vm.pricing is not None
    assert vm.pricing.billing_cycle is not None
    assert vm.pricing.billing_cycle.is_free is False
    assert vm.pricing.currency == "SEK"
    assert isinstance(vm.pricing.price_per_cycle, Decimal)
    assert vm.bandwidth_usage is not None and vm.bandwidth_usage.data_sent > 0
    assert vm.details is not None and vm.details.username == "root"
    ((stamp, sample),) = vm.usage_log.items()
    assert stamp == datetime(2026, 1, 12, 17, tzinfo=timezone.utc)
    assert sample == UsageSample(cpu=0.25, mem=1.5e9, data_sent=12.5, time=1768237200.0)


def test_numbers_arrive_as_strings_floats_or_ints() -> None:
    vm = decode_vm_details(
        envelope(
            {
                "cpu": "2",
                "ram": "4.5",
                "disk": 80.0,
                "backups": 1.0,
                "uptime": "12.5",
                "price": 39,
                "total": "39.00",
                "firstpayment": 39.5,
            }
        )
    )
    assert (vm.cpu, vm.ram, vm.disk, vm.backups, vm.uptime) == (2, 4.5, 80.0, 1, 12.5)
    assert (vm.price, vm.total, vm.firstpayment) == (Decimal(39), Decimal("39.00"), Decimal("39.5"))


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False))
def test_money_is_exact_decimal_whether_sent_as_number_or_string(amount: Decimal) -> None:
    as_string = decode_vm_details(envelope({"price": str(amount)}))
    as_number = decode_vm_details(f'{{"success":true,"data":{{"price":{amount}}}}}'.encode())
    assert as_string.price == amount == as_number.price
    assert isinstance(as_number.price, Decimal)


@given(st.floats(min_value=0, max_value=1e15, allow_nan=False), st.sampled_from(["num", "str"]))
def test_usage_values_may_be_fractional_numbers_or_strings(value: float, form: str) -> None:
    wire: Any = value if form == "num" else repr(value)
    vm = decode_vm_details(
        envelope({"usage_log": {"2026-01-12T17:00:00Z": {"cpu": wire, "mem": wire}}})
    )
    sample = next(iter(vm.usage_log.values()))
    assert sample.cpu == value and sample.mem == value


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("2024-03-01", date(2024, 3, 1)),
        ("", None),
        ("0000-00-00", None),
        (None, None),
        ("2024-03-01 10:00:00", date(2024, 3, 1)),
    ],
)
def test_dates_become_date_or_none(wire: str | None, expected: date | None) -> None:
    vm = decode_vm_details(envelope({"created": wire, "next_due": wire}))
    assert vm.created == expected
    assert vm.next_due == expected


@pytest.mark.parametrize("usage_log", [True, False])
def test_invalid_date_is_a_decode_error_that_says_where(usage_log: bool) -> None:
    with pytest.raises(DecodeError, match=r"\$\.data") as info:
        decode_vm_details(
            envelope({"created": "021-10-03"}, request_id="rid-7"), usage_log=usage_log
        )
    assert info.value.request_id == "rid-7"


def test_absent_fields_and_objects_get_defaults_and_unknown_fields_are_ignored() -> None:
    vm = decode_vm_details(envelope({"brand_new_field": {"x": 1}, "hostname": "h"}))
    assert vm.hostname == "h"
    assert vm.details is None and vm.pricing is None and vm.bandwidth_usage is None
    assert vm.usage_log == {} and vm.ip_addresses == []
    assert vm.price == Decimal(0) and vm.cpu == 0


def test_usage_log_is_utc_and_in_time_order_whatever_the_wire_order() -> None:
    log = {
        "2026-01-12T19:00:00Z": {"cpu": 3},
        "2026-01-12T17:00:00": {"cpu": 1},  # naive: UTC by convention
        "2026-01-12T19:00:00+01:00": {"cpu": 2},  # 18:00 UTC
    }
    vm = decode_vm_details(envelope({"usage_log": log}))
    assert [s.cpu for s in vm.usage_log.values()] == [1, 2, 3]
    assert [k.hour for k in vm.usage_log] == [17, 18, 19]
    assert all(k.tzinfo is timezone.utc for k in vm.usage_log)


def test_usage_log_false_skips_the_log_and_keeps_everything_else() -> None:
    data = api_data("/vm/8/details")
    data["usage_log"] = {"2026-01-12T17:00:00Z": {"cpu": 1}}
    full = decode_vm_details(envelope(data))
    lean = decode_vm_details(envelope(data), usage_log=False)
    assert type(lean) is VMDetails
    assert lean.usage_log == {}
    assert msgspec.structs.replace(full, usage_log={}) == lean


def test_passwords_never_show_in_repr_or_str() -> None:
    vm = decode_vm_details(envelope(api_data("/vm/3/details")))
    assert vm.details is not None
    secret = api_data("/vm/3/details")["details"]["password"]
    root = api_data("/vm/3/details")["details"]["rootpassword"]
    for text in (
        repr(vm),
        str(vm),
        repr(vm.details),
        str(vm.details),
        repr(vm.details.password),
        str(vm.details.password),
    ):
        assert secret not in text and root not in text
    assert vm.details.password is not None and vm.details.rootpassword is not None
    assert vm.details.password.get_secret_value() == secret
    assert vm.details.rootpassword.get_secret_value() == root


def test_secret_str_compares_by_value_without_revealing_it() -> None:
    assert SecretStr("a") == SecretStr("a") != SecretStr("b")
    assert SecretStr("a") != "a"
    assert hash(SecretStr("a")) == hash(SecretStr("a"))
    assert not SecretStr("") and SecretStr("x")
    assert Credentials(password=SecretStr("pw")).password == SecretStr("pw")


def test_billing_cycle_decodes_with_camel_case_as_snake_case() -> None:
    bc = decode_billing_cycle(envelope(api_data("/vm/10001/billing-cycle"), request_id="r-bc"))
    assert bc.request_id == "r-bc"
    assert bc.current == "m" and bc.current_name == "Monthly"
    assert bc.product_id == "3001" and bc.account_id == "110001"
    monthly, annual = bc.cycles
    assert (
        monthly.price == Decimal("79.00")
        and monthly.is_current
        and monthly.billing_cycle == "Monthly"
    )
    assert annual.price == Decimal("758.00") and not annual.is_current
    assert isinstance(bc, BillingCycle)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"<html>Bad gateway</html>",
        b'{"success": true, "data": ',
        b"[]",
        b"null",
        b'{"success": true}',
        b'{"success": true, "data": []}',
        b'{"success": true, "data": {"cycles": "many", "cpu": "many"}}',
    ],
)
def test_bad_bodies_raise_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_vm_details(raw)
    with pytest.raises(DecodeError):
        decode_billing_cycle(raw)


def test_schema_mismatch_names_the_field() -> None:
    with pytest.raises(DecodeError, match=r"\$\.data\.cpu"):
        decode_vm_details(b'{"success": true, "data": {"cpu": "many"}}')


def test_success_false_is_an_api_error_with_code_and_request_id() -> None:
    raw = b'{"success": false, "code": "SUSPENDED", "message": "Tjansten ar avstangd", "requestId": "r9"}'
    with pytest.raises(APIError) as info:
        decode_vm_details(raw)
    err = info.value
    assert (err.status, err.code, err.message, err.request_id) == (
        200,
        "SUSPENDED",
        "Tjansten ar avstangd",
        "r9",
    )
    assert err.body["code"] == "SUSPENDED"


def test_success_false_with_unexpected_data_is_still_an_api_error() -> None:
    raw = b'{"success": false, "code": "X", "data": {"cpu": "many"}}'
    with pytest.raises(APIError, match="X"):
        decode_billing_cycle(raw)


def hours_log(start: datetime, count: int, step: int = 1) -> dict[str, dict[str, float]]:
    """Canonical ``...Z`` hour keys, as the real API sends them, ``step`` hours apart."""
    return {
        (start + timedelta(hours=i * step)).strftime("%Y-%m-%dT%H:%M:%SZ"): {"cpu": float(i)}
        for i in range(count)
    }


def test_repeated_hours_give_equal_logs_and_share_the_key_objects() -> None:
    log = hours_log(datetime(2026, 1, 1), 48)
    first = decode_vm_details(envelope({"usage_log": log}))
    second = decode_vm_details(envelope({"usage_log": log}))
    assert first.usage_log == second.usage_log
    assert list(first.usage_log) == [
        datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(hours=i) for i in range(48)
    ]
    assert all(a is b for a, b in zip(first.usage_log, second.usage_log, strict=True))
    assert all(k.tzinfo is timezone.utc for k in second.usage_log)


def test_known_hours_out_of_order_are_still_sorted() -> None:
    log = hours_log(datetime(2025, 6, 1), 24)
    decode_vm_details(envelope({"usage_log": log}))  # the hours are now known
    shuffled = dict(reversed(list(log.items())))
    vm = decode_vm_details(envelope({"usage_log": shuffled}))
    assert [s.cpu for s in vm.usage_log.values()] == [float(i) for i in range(24)]
    assert list(vm.usage_log) == sorted(vm.usage_log)


def test_known_and_unusual_keys_mixed_are_normalised_and_sorted() -> None:
    log: dict[str, dict[str, float]] = hours_log(datetime(2025, 7, 1), 3)
    decode_vm_details(envelope({"usage_log": log}))
    log["2025-07-01T00:30:00+00:30"] = {"cpu": -1.0}  # 00:00 UTC, overrides the first
    log["2025-06-30 23:00:00"] = {"cpu": -2.0}  # naive, space-separated: UTC
    vm = decode_vm_details(envelope({"usage_log": log}))
    assert [s.cpu for s in vm.usage_log.values()] == [-2.0, -1.0, 1.0, 2.0]
    assert [k.hour for k in vm.usage_log] == [23, 0, 1, 2]


@pytest.mark.parametrize("key", ["garbage", "", "2026-01-12", "2026-01-12T17:00Z"])
def test_bad_usage_log_key_is_a_decode_error_naming_the_key(key: str) -> None:
    with pytest.raises(DecodeError, match=r"usage_log key .* - at `\$\.data`"):
        decode_vm_details(envelope({"usage_log": {key: {"cpu": 1}}}))


def test_more_distinct_hours_than_the_key_cache_holds_decode_correctly() -> None:
    # 20,000 hours is over two years: past the cache's bound, which must then start over.
    log = hours_log(datetime(2020, 1, 1), 20_000)
    vm = decode_vm_details(envelope({"usage_log": log}))
    assert len(vm.usage_log) == 20_000
    assert list(vm.usage_log)[-1] == datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(
        hours=19_999
    )
    again = decode_vm_details(envelope({"usage_log": log}))
    assert again.usage_log == vm.usage_log


def test_vm_details_built_in_code_gets_utc_keys_in_time_order() -> None:
    later = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))  # 10:00 UTC
    earlier = datetime(2026, 1, 1, 9)  # naive: UTC
    vm = VMDetails(usage_log={later: UsageSample(cpu=2), earlier: UsageSample(cpu=1)})
    assert list(vm.usage_log) == [
        datetime(2026, 1, 1, 9, tzinfo=timezone.utc),
        datetime(2026, 1, 1, 10, tzinfo=timezone.utc),
    ]
    assert [s.cpu for s in vm.usage_log.values()] == [1, 2]
    with pytest.raises(TypeError, match="usage_log keys"):
        VMDetails(usage_log={1: UsageSample()})  # type: ignore[dict-item]


def test_details_round_trip_through_json_keeps_every_value() -> None:
    data = api_data("/vm/21/details")
    data["usage_log"] = hours_log(datetime(2026, 2, 1), 5)
    del data["details"]  # SecretStr refuses to be encoded, by design
    vm = decode_vm_details(envelope(data))
    again = decode_vm_details(
        msgspec.json.encode({"success": True, "requestId": "req-1", "data": vm}),
    )
    assert again == vm
    assert next(iter(again.usage_log)) == datetime(2026, 2, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("usage_log", [True, False])
def test_nulls_empty_arrays_and_numeric_ids_do_not_cost_the_vm(usage_log: bool) -> None:
    data = api_data("/vm/5/details")
    data.update(
        {
            "ipv6": None,
            "hostname": None,
            "ip_addresses": None,
            "cpu": None,
            "price": None,
            "id": 110415,
            "order_id": 50005.0,
            "bandwidth_usage": [],
            "details": [],
            "usage_log": [],
            "total": "",
            "created": None,
        }
    )
    data["pricing"]["addons"] = None
    vm = decode_vm_details(envelope(data, request_id="r-lenient"), usage_log=usage_log)
    assert vm.request_id == "r-lenient"
    assert (vm.id, vm.order_id) == ("110415", "50005.0")
    assert (vm.ipv6, vm.hostname, vm.ip_addresses, vm.cpu) == ("", "", [], 0)
    assert (vm.price, vm.total) == (Decimal(0), Decimal(0))
    assert vm.bandwidth_usage is None and vm.details is None and vm.usage_log == {}
    assert vm.created is None
    assert vm.pricing is not None and vm.pricing.addons == []
    assert vm.pricing.base_monthly_cost == Decimal("79.0")  # the other fields are untouched


def test_lenient_pass_keeps_money_exact_and_cleans_nested_samples() -> None:
    raw = (
        b'{"success":true,"data":{"hostname":null,"price":39.10,'
        b'"usage_log":{"2026-01-01T00:00:00Z":{"cpu":null,"mem":"1.5"}}}}'
    )
    vm = decode_vm_details(raw)
    assert vm.price == Decimal("39.10")
    (sample,) = vm.usage_log.values()
    assert (sample.cpu, sample.mem) == (0.0, 1.5)


def test_what_the_lenient_pass_cannot_fix_is_still_a_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"\$\.data\.cycles\[1\]"):
        decode_billing_cycle(b'{"success":true,"data":{"cycles":[{"id":"m"},null]}}')
    with pytest.raises(DecodeError, match=r"\$\.data\.cpu"):
        decode_vm_details(b'{"success":true,"data":{"cpu":"four"}}')


def test_to_builtins_uses_python_names_and_masks_secrets() -> None:
    from hostup_async import to_builtins

    data = api_data("/vm/3/details")
    data["usage_log"] = {"2026-01-12T17:00:00Z": {"cpu": 0.5}}
    vm = decode_vm_details(envelope(data, request_id="r-b"))
    plain = to_builtins(vm)
    assert plain["pricing"]["price_per_cycle"] == data["pricing"]["pricePerCycle"]
    assert plain["pricing"]["billing_cycle"]["is_free"] is False
    assert plain["details"]["password"] == "**********"
    assert plain["usage_log"]["2026-01-12T17:00:00Z"]["cpu"] == 0.5
    assert plain["request_id"] == "r-b"
    assert msgspec.json.decode(msgspec.json.encode(plain)) == plain
    shown = to_builtins(vm.details, show_secrets=True)
    assert shown["password"] == data["details"]["password"]
    assert (
        to_builtins([bc := decode_billing_cycle(envelope(api_data("/vm/1/billing-cycle")))])[0][
            "current_name"
        ]
        == bc.current_name
    )
