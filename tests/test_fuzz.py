"""Fuzzing: random and mutated bodies into both decoders and through the client.

Whatever arrives, only ``HostUpError`` subclasses may escape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostup_async import (
    APIError,
    DecodeError,
    HostUpClient,
    HostUpError,
    decode_billing_cycle,
    decode_vm_details,
)
from hostup_async._exceptions import error_for_status
from hostup_async.testing import FakeHostUp, Fault

from .conftest import API_KEY, api_data

FUZZ = settings(max_examples=150, deadline=None)
FUZZ_HTTP = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _envelope(path: str) -> dict[str, Any]:
    return {"success": True, "requestId": "r-1", "data": api_data(path)}


VALID = [_envelope(f"/vm/{v}/details") for v in (1, 5, 11, 13)] + [
    _envelope(f"/vm/{v}/billing-cycle") for v in (2, 5)
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["", "0000-00-00", "2026-13-45", "12.5", "-1", "1e400", "NaN", "true"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def structurally_mutated(draw: st.DrawFn) -> bytes:
    """A valid envelope with one to three values replaced by arbitrary JSON, or keys removed."""
    doc = msgspec.json.decode(msgspec.json.encode(draw(st.sampled_from(VALID))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            doc = draw(json_values)
            continue
        parent = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            if isinstance(parent, dict) and draw(st.booleans()):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced part of the path
    return msgspec.json.encode(doc)


@st.composite
def byte_mutated(draw: st.DrawFn) -> bytes:
    """A valid body with bytes cut, inserted or flipped."""
    raw = bytearray(msgspec.json.encode(draw(st.sampled_from(VALID))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["cut", "insert", "flip", "truncate"]))
        if op == "cut":
            del raw[at : at + draw(st.integers(1, 40))]
        elif op == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "flip" and at < len(raw):
            raw[at] ^= draw(st.integers(1, 255))
        else:
            del raw[at:]
    return bytes(raw)


bodies = st.binary(max_size=300) | structurally_mutated() | byte_mutated()


def _decode_all(raw: bytes) -> None:
    for decode in (
        decode_vm_details,
        lambda r: decode_vm_details(r, usage_log=False),
        decode_billing_cycle,
    ):
        with contextlib.suppress(HostUpError):
            decode(raw)


@pytest.mark.parametrize("decode", [decode_vm_details, decode_billing_cycle])
def test_invalid_utf8_in_a_string_is_a_decode_error(decode: Any) -> None:
    with pytest.raises(DecodeError):
        decode(b'{"success": true, "requestId": "\x80", "data": {}}')


async def test_invalid_utf8_through_the_client_is_a_decode_error(
    fake: FakeHostUp, client: HostUpClient
) -> None:
    fake.inject(Fault.custom(b'{"success": true, "requestId": "r-9", "data": {"id": "\x80"}}'))
    with pytest.raises(DecodeError) as info:
        await client.get_vm_details(1)
    assert info.value.request_id == "r-9"
    assert fake.stats.requests == 1  # the body is JSON-shaped, so not retried


def test_valid_bodies_decode() -> None:
    for envelope in VALID:
        raw = msgspec.json.encode(envelope)
        decode = decode_vm_details if "hostname" in envelope["data"] else decode_billing_cycle
        assert decode(raw).request_id is not None


@FUZZ
@given(bodies)
def test_decoders_raise_only_hostup_errors(raw: bytes) -> None:
    _decode_all(raw)


@FUZZ
@given(st.text(max_size=200) | structurally_mutated().map(lambda b: b.decode()))
def test_decoders_accept_text_and_raise_only_hostup_errors(raw: str) -> None:
    _decode_all(raw.encode("utf-8", "surrogatepass") if "\ud800" in raw else raw.encode())


statuses = st.sampled_from([200, 201, 299, 302, 400, 401, 403, 404, 418, 429, 500, 502, 503, 504])
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
# A 429 pauses the whole client for its wait (a second when it names none): keep fuzzed
# 429s to short, readable waits so the run stays quick; odd values go with other statuses.
short_waits = st.sampled_from(["0", "0.001", "0.01", "-1", "Wed, 21 Oct 2015 07:28:00 GMT"])


@FUZZ_HTTP
@given(
    body=bodies,
    status=statuses,
    retry_after=st.none() | header_text,
    wait=short_waits,
    usage_log=st.booleans(),
)
async def test_client_raises_only_hostup_errors_whatever_the_server_sends(
    fake: FakeHostUp,
    body: bytes,
    status: int,
    retry_after: str | None,
    wait: str,
    usage_log: bool,
) -> None:
    if status == 429:
        retry_after = wait
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    fake.inject(Fault.custom(body, status=status, headers=headers), vmid=7)
    fake.inject(Fault.custom(body, status=status, headers=headers), vmid=8)
    # A client per example: a 429 slows its client's pace for a while, which would carry
    # into the examples after it (they would only be slower).
    async with HostUpClient(API_KEY, base_url=fake.url, rate_limit=None) as client:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: client.get_vm_details(7, usage_log=usage_log, max_retries=0),
            lambda: client.get_billing_cycle(8, max_retries=0),
        ]
        for call in calls:
            asked = fake.stats.requests
            error = await _error_of(call())
            # The server was asked, once: nothing failed before the request (a closed
            # client, a setting) or at the transport, and max_retries=0 was kept.
            assert fake.stats.requests == asked + 1
            if 200 <= status < 300:
                # Decoded, or refused as what it is: a body off the schema, or success: false.
                assert error is None or type(error) in (DecodeError, APIError), repr(error)
            else:
                # Never taken for data: the error of that very status, whatever the body says.
                assert type(error) is error_for_status(status), repr(error)
                assert isinstance(error, APIError) and error.status == status


async def _error_of(call: Awaitable[object]) -> APIError | DecodeError | None:
    """The error a call ends with (only an answer's errors are caught), or None."""
    try:
        await call
    except (APIError, DecodeError) as exc:
        return exc
    return None
