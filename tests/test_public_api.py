from __future__ import annotations

import inspect

import msgspec
import pytest

import hostup_async

CONTRACT = {
    "HostUpClient",
    "VMDetails",
    "UsageSample",
    "BandwidthUsage",
    "Credentials",
    "Pricing",
    "PricingCycle",
    "BillingCycle",
    "CycleOption",
    "SecretStr",
    "decode_vm_details",
    "decode_billing_cycle",
    "HostUpError",
    "APIError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "GatewayTimeoutError",
    "TransportError",
    "RequestTimeoutError",
    "DecodeError",
    "VMResult",
}


def test_contract_names_are_exported() -> None:
    assert set(hostup_async.__all__) >= CONTRACT


@pytest.mark.parametrize("module", [hostup_async])
def test_all_is_sorted_and_importable(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert names == sorted(names)
    for name in names:
        assert hasattr(module, name), name


@pytest.mark.parametrize("name", [n for n in hostup_async.__all__ if n != "__version__"])
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(hostup_async, name)
    assert inspect.getdoc(obj), name
    if inspect.isclass(obj):
        for attr, value in vars(obj).items():
            if not attr.startswith("_") and callable(value):
                assert inspect.getdoc(value), f"{name}.{attr}"


def test_error_tree_matches_the_contract() -> None:
    h = hostup_async
    assert issubclass(h.AuthenticationError, h.APIError)
    assert issubclass(h.GatewayTimeoutError, h.ServerError)
    assert issubclass(h.ServerError, h.APIError)
    assert issubclass(h.RequestTimeoutError, h.TransportError)
    for cls in (h.APIError, h.TransportError, h.DecodeError):
        assert issubclass(cls, h.HostUpError)
    assert issubclass(h.InvalidVMIDTypeError, TypeError)
    assert issubclass(h.InvalidVMIDError, ValueError)


def test_struct_names_follow_the_wire_in_snake_case() -> None:
    fields = {f.name: f.encode_name for f in msgspec.structs.fields(hostup_async.Pricing)}
    assert fields["price_per_cycle"] == "pricePerCycle"
    assert {f.name for f in msgspec.structs.fields(hostup_async.CycleOption)} == {
        "id",
        "name",
        "price",
        "is_current",
        "billing_cycle",
    }
    assert "details" in {f.name for f in msgspec.structs.fields(hostup_async.VMDetails)}
