"""A hostile or broken server: a HostUp error or a result, bounded time and memory, never the key.

The server here is this module's own: a small aiohttp app on loopback whose answer for each
vmid is whatever a case says, including what no real API (and not ``FakeHostUp``) would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import gc
import logging
import pickle
import shutil
import ssl
import subprocess
import sys
import threading
import traceback
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostup_async import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    HostUpClient,
    HostUpError,
    InvalidVMIDError,
    NotFoundError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    TransportError,
    VMDetails,
    VMResult,
    to_builtins,
)
from hostup_async.testing._data import usage_log_json, vm_data

from .conftest import run_apart, unmeasured_env
from .test_cli import run_cli

KEY = "hostile-key-7Qx2/Lm9"  # with a "/": PHP writes it as "\/" inside JSON strings
MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ok_body(vmid: int, **data: Any) -> bytes:
    """A valid details answer for ``vmid`` (no usage log), with ``data`` fields replaced."""
    return msgspec.json.encode(
        {"success": True, "requestId": f"r-{vmid}", "data": {**vm_data(vmid), **data}}
    )


def answer(body: bytes, status: int = 200, **headers: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=status, headers=headers)

    return handle


class Hostile:
    """A loopback server that answers each vmid with the handler a case set, else a valid VM."""

    def __init__(self) -> None:
        self.handlers: dict[int, Handler] = {}
        self.seen: list[str] = []
        self.on_request: Callable[[], None] | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> Hostile:
        app = web.Application()
        app.router.add_get("/api/vm/{vmid}/{what}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = self._runner.addresses[0][1]
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{port}/api"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.path)
        if self.on_request is not None:
            self.on_request()
        vmid = int(request.match_info["vmid"])
        handler = self.handlers.get(vmid)
        if handler is not None:
            return await handler(request)
        return web.Response(body=ok_body(vmid), content_type="application/json")


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    server = await Hostile().start()
    try:
        yield server
    finally:
        await server.stop()


def client_for(server: Hostile, **options: Any) -> HostUpClient:
    settings: dict[str, Any] = {"rate_limit": None, "max_retries": 0, "timeout": 30.0}
    return HostUpClient(KEY, base_url=server.url, **{**settings, **options})


def shown(*things: Any) -> str:
    """Everything a user can see of ``things``: str, repr, and exception tracebacks with chains."""
    parts: list[str] = []
    for thing in things:
        parts += [str(thing), repr(thing)]
        if isinstance(thing, BaseException):
            parts += traceback.format_exception(thing)
            parts += [repr(getattr(thing, "body", None)), str(getattr(thing, "last_error", ""))]
        if isinstance(thing, VMResult):
            parts += shown(thing.error) if thing.error is not None else []
            if thing.details is not None:
                parts += [repr(to_builtins(thing.details))]
    return "\n".join(parts)


def nested(depth: int, inner: Any = "x") -> bytes:
    """JSON of ``inner`` inside ``depth`` lists."""
    return b"[" * depth + msgspec.json.encode(inner) + b"]" * depth


# -- one hostile answer among good ones ----------------------------------------------------


@functools.cache  # a 64 MiB bomb takes a third of a second to pack
def _gzip_bomb(inflated: int) -> bytes:
    """A gzip body of ``inflated`` zero bytes, compressed about a thousandfold."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    return b"".join(packer.compress(zeros) for _ in range(inflated // MIB)) + packer.flush()


def _gzipped(body: bytes) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    return handle


async def _endless(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    chunk = b" " * (64 * 1024)
    with contextlib.suppress(ConnectionError):
        while True:  # until the client hangs up
            await response.write(chunk)
    return response


async def _claims_200_mb(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 200 * MIB
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        for _ in range(200 * 16):
            await response.write(b" " * (64 * 1024))
    return response


# The key starts at character 491, so a cut at 500 before masking would leave its first half.
_KEY_IN_HTML = ("x" * 480 + f"X-API-Key: {KEY}" + "y" * 100).encode()
_ESCAPED_KEY = "".join(f"\\u{ord(c):04x}" for c in KEY)

# name -> (handler for the hostile vmid, the error it must end in, or None for a good result)
CASES: dict[str, tuple[Handler, type[HostUpError] | None]] = {
    "429 with an HTTP date in year 99999": (
        answer(b"{}", 429, **{"Retry-After": "Fri, 31 Dec 99999 23:59:59 GMT"}),
        RateLimitError,
    ),
    "success: false nested 600 deep": (
        answer(b'{"success": false, "message": "no", "deep": ' + nested(600) + b"}"),
        APIError,
    ),
    "404 whose message is nested 700 deep": (
        answer(b'{"success": false, "message": ' + nested(700) + b"}", 404),
        NotFoundError,
    ),
    "500 nested 3000 deep": (answer(b'{"message": ' + nested(3000) + b"}", 500), ServerError),
    "401 whose code, message and requestId are the key": (
        answer(
            msgspec.json.encode(
                {"success": False, "code": KEY, "message": f"bad key {KEY}", "requestId": KEY}
            ),
            401,
        ),
        AuthenticationError,
    ),
    "an HTML page echoing the key across the 500-character cut": (
        answer(_KEY_IN_HTML, 502, **{"Content-Type": "text/html"}),
        ServerError,
    ),
    "the key spelled with \\u escapes in an error": (
        answer(f'{{"success": false, "message": "{_ESCAPED_KEY}"}}'.encode(), 403),
        APIError,
    ),
    "a 200 whose data echoes the key": (answer(ok_body(7, hostname=f"echo {KEY}")), None),
    "a 200 whose data echoes the key in \\u escapes": (
        answer(ok_body(7).replace(b'"hostname":"', f'"hostname":"{_ESCAPED_KEY}'.encode())),
        None,
    ),
    "a 200 whose data echoes the key as PHP writes it": (
        answer(ok_body(7, hostname=KEY).replace(b"/", b"\\/")),
        None,
    ),
    "a usage-log hour that is the key": (
        answer(ok_body(7, usage_log={f"{KEY}{'z' * 5000}": {}})),
        DecodeError,
    ),
    "a code that is a 400-digit number and a megabyte message": (
        answer(
            b'{"success": false, "code": 1' + b"0" * 400 + b', "message": "' + b"m" * MIB + b'"}',
            400,
        ),
        APIError,
    ),
    "a gzip bomb": (_gzipped(_gzip_bomb(64 * MIB)), ResponseTooLargeError),
    "an endless chunked body": (_endless, ResponseTooLargeError),
    "a body of 200 MB": (_claims_200_mb, ResponseTooLargeError),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
async def test_one_hostile_answer_is_one_result_and_the_stream_goes_on(
    hostile: Hostile, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    handler, expected = CASES[case]
    hostile.handlers[7] = handler
    events: list[str] = []
    async with client_for(
        hostile, max_body_size=4 * MIB, on_attempt=lambda e: events.append(repr(e))
    ) as client:
        results = [r async for r in client.stream_vms(range(1, 21))]
    assert sorted(r.index for r in results) == list(range(20))
    others = [r for r in results if r.vmid != 7]
    assert all(r.ok and r.details is not None for r in others)
    [result] = [r for r in results if r.vmid == 7]
    if expected is None:
        assert result.ok and isinstance(result.details, VMDetails)
    else:
        assert isinstance(result.error, expected), result.error
        assert len(str(result.error)) < 2000
    again = pickle.loads(pickle.dumps(result))
    assert again == result or (again.vmid, repr(again.error)) == (result.vmid, repr(result.error))
    text = shown(*results) + caplog.text + "\n".join(events)
    assert KEY not in text
    assert KEY.replace("/", "\\/") not in text
    assert KEY[:9] not in text  # nor a piece of it, cut off where the server's text was


async def test_a_body_above_a_megabyte_decodes_whole(hostile: Hostile) -> None:
    """A body past the off-loop threshold (a year of samples is ~3 MB) decodes like any other."""
    log = usage_log_json(8760, 0, datetime(2026, 1, 1, tzinfo=timezone.utc))
    body = ok_body(7).replace(b'"data":{', b'"data":{"usage_log":' + log + b",", 1)
    assert len(body) > MIB
    hostile.handlers[7] = answer(body)
    async with client_for(hostile) as client:
        vm = await client.get_vm_details(7)
    assert len(vm.usage_log) == 8760


# -- retry hints no float can hold -----------------------------------------------------------

ABSURD_HINTS: list[tuple[bytes, dict[str, str]]] = [
    (b'{"retryAfter": 1' + b"0" * 400 + b"}", {}),
    (b'{"retryAfter": -1' + b"0" * 400 + b"}", {}),
    (b'{"retryAfter": "1e400"}', {}),
    (b'{"retryAfter": "' + b"9" * 5000 + b'"}', {}),
    (b'{"retryAfter": [1, 2]}', {}),
    (b"{}", {"Retry-After": "Fri, 31 Dec 99999 23:59:59 GMT"}),
    (b"{}", {"Retry-After": "Fri, 31 Dec 999999999999999999999 23:59:59 GMT"}),
    (b"{}", {"Retry-After": "Mon, 01 Jan 0001 00:00:00 GMT"}),
    (b"<html>slow down</html>", {"Retry-After": "1" + "0" * 400}),
]


async def _one_429(server: Hostile, body: bytes, headers: dict[str, str]) -> RateLimitError:
    server.handlers[7] = answer(body, 429, **headers)
    # A fresh client per hint: the client-wide pause after it must not hold the next case.
    async with client_for(server) as client:
        with pytest.raises(RateLimitError) as info:
            await client.get_vm_details(7)
    return info.value


@pytest.mark.parametrize(("body", "headers"), ABSURD_HINTS)
async def test_an_absurd_retry_hint_is_a_rate_limit_error_with_a_finite_wait(
    hostile: Hostile, body: bytes, headers: dict[str, str]
) -> None:
    error = await _one_429(hostile, body, headers)
    assert error.retry_after is None or 0 <= error.retry_after <= 3600


async def test_a_stream_meeting_an_absurd_retry_hint_ends_every_item_at_once(
    hostile: Hostile,
) -> None:
    """A 400-digit ``retryAfter`` is past any wait allowed: the stream ends, it does not stall.

    The client-wide pause lasts ``max_retry_after`` (60 s) while the server asked for an
    hour: every item not already sent when the 429 came ends at once, unsent. Answers to
    requests that were in flight then do not cut the pause short to what a call would wait.
    """
    hostile.handlers[7] = answer(b'{"retryAfter": 1' + b"0" * 400 + b"}", 429)
    loop = asyncio.get_running_loop()
    arrived: list[float] = []
    async with client_for(hostile) as client:
        results = []
        async for r in client.stream_vms(range(1, 101)):
            results.append(r)
            arrived.append(loop.time())
    assert sorted(r.index for r in results) == list(range(100))
    [hostile_one] = [r for r in results if r.vmid == 7]
    assert isinstance(hostile_one.error, RateLimitError)
    refused_at = arrived[results.index(hostile_one)]
    others = [r for r in results if not r.ok and r is not hostile_one]
    assert others and all(isinstance(r.error, RateLimitError) for r in others)
    assert all("not sent" in str(r.error) for r in others)
    # Every item ended without a request after the 429: the server saw the requests of
    # the items that succeeded (in flight when it came), and the refused one.
    assert len(hostile.seen) == sum(r.ok for r in results) + 1
    # On the loop's clock, no item waited for the bounded pause (60 s) to end.
    assert max(arrived) < refused_at + 60.0
    assert KEY not in shown(*results)


hints = st.one_of(
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.from_regex(r"(Mon|Fri), [0-9]{2} (Jan|Dec) [0-9]{1,30} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"),
    st.none(),
    st.lists(st.integers(), max_size=3),
)
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(hint=hints, header=st.one_of(st.none(), st.text(max_size=80), hints.map(str)))
async def test_any_retry_hint_gives_a_rate_limit_error_with_none_or_a_finite_wait(
    hostile: Hostile, hint: Any, header: str | None
) -> None:
    body = b'{"retryAfter": ' + _json(hint) + b"}"
    fields = {} if header is None else {"Retry-After": _header_safe(header)}
    error = await _one_429(hostile, body, fields)
    assert error.retry_after is None or 0 <= error.retry_after <= 3600


def _json(value: Any) -> bytes:
    if isinstance(value, float) and not (value == value and abs(value) != float("inf")):
        return str(value).encode()  # NaN and Infinity, as a sloppy encoder writes them
    if isinstance(value, int) and abs(value) > 2**64:
        return str(value).encode()  # msgspec refuses to write ints wider than 64 bits
    return msgspec.json.encode(value)


def _header_safe(text: str) -> str:
    return "".join(c for c in text if c.isascii() and c.isprintable()).strip() or "x"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def error_bodies(draw: st.DrawFn) -> bytes:
    """A JSON error body with the key somewhere in it, at some nesting depth."""
    doc: dict[str, Any] = draw(st.dictionaries(st.sampled_from(
        ["success", "message", "error", "code", "requestId", "retryAfter", "data"]), json_values))  # fmt: skip
    field = draw(st.sampled_from(["message", "error", "code", "requestId", "data", "extra"]))
    doc[field] = draw(st.sampled_from([KEY, f"x {KEY} y", [KEY], {"k": KEY}, {KEY: 1}]))
    raw = msgspec.json.encode(doc)
    depth = draw(st.sampled_from([0, 1, 50, 600, 1200, 5000]))
    if depth:
        raw = raw[:-1] + b', "deep": ' + nested(depth) + b"}"
    if draw(st.booleans()):
        raw = raw.replace(KEY.encode(), _ESCAPED_KEY.encode())
    return raw


@PROPERTY
@given(body=error_bodies(), status=st.sampled_from([200, 400, 401, 403, 404, 500, 502, 504]))
async def test_any_error_body_gives_a_hostup_error_without_the_key(
    hostile: Hostile, body: bytes, status: int
) -> None:
    if status == 200:
        body = body.replace(b'"success":true', b'"success":false')
    hostile.handlers[7] = answer(body, status)
    async with client_for(hostile) as client:
        results = await client.fetch_vms([6, 7, 8])
    assert [r.vmid for r in results] == [6, 7, 8]
    assert results[0].ok and results[2].ok
    assert KEY not in shown(*results)
    if not results[1].ok:
        assert isinstance(results[1].error, HostUpError)
        again = pickle.loads(pickle.dumps(results[1].error))
        assert type(again) is type(results[1].error) and str(again) == str(results[1].error)


# -- ids and options -------------------------------------------------------------------------


async def test_huge_vmids_are_failed_results_and_never_sent(hostile: Hostile) -> None:
    huge = [10**5000, 2**63, 10**30, -(10**5000)]
    async with client_for(hostile) as client:
        results = await client.fetch_vms([1, *huge, 2**63 - 1, 2])
        for vmid in huge:
            with pytest.raises(InvalidVMIDError):
                await client.get_vm_details(vmid)
    assert [r.ok for r in results] == [True, False, False, False, False, True, True]
    for result in results[1:5]:
        assert isinstance(result.error, InvalidVMIDError)
        assert len(str(result.error)) < 200
    assert sorted(hostile.seen) == sorted(f"/api/vm/{v}/details" for v in (1, 2**63 - 1, 2))


BAD_NUMBERS: list[dict[str, Any]] = [
    {"timeout": 10**400},
    {"timeout": 5e-324},
    {"rate_limit": 10**400},
    {"rate_limit": 1e-320},
    {"max_concurrency": 10**6},
    {"max_concurrency": 10**400},
    {"max_body_size": 0},
]


@pytest.mark.parametrize("options", BAD_NUMBERS, ids=repr)
def test_overflowing_and_denormal_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        HostUpClient(KEY, base_url="http://127.0.0.1:9/api", **options)
    assert len(str(info.value)) < 300


async def test_overflowing_per_call_timeouts_fail_before_io(hostile: Hostile) -> None:
    async with client_for(hostile) as client:
        for timeout in (10**400, 1e-320):
            with pytest.raises(ConfigurationError):
                await client.get_vm_details(1, timeout=timeout)
    assert hostile.seen == []


async def test_many_distinct_per_call_timeouts_keep_memory_flat(hostile: Hostile) -> None:
    async with client_for(hostile) as client:
        for i in range(300):
            await client.get_billing_cycle(1, timeout=10 + i / 1000)
        transport = client._open()
        assert len(transport._timeouts) <= 64


async def test_workers_never_outnumber_the_items_pulled(hostile: Hostile) -> None:
    tasks: list[int] = []
    hostile.on_request = lambda: tasks.append(len(asyncio.all_tasks()))
    async with client_for(hostile, max_concurrency=10_000) as client:
        results = await client.fetch_vms(iter([1, 2, 3]))
    assert [r.ok for r in results] == [True, True, True]
    # The test, the server's connections and handlers, and one worker per item.
    assert max(tasks) < 30


async def test_absurd_cli_options_are_one_line_usage_errors(hostile: Hostile) -> None:
    for option in (["--concurrency", "1000000000"], ["--rate", "1e-320"]):
        code, out, err = await run_cli("fetch", "1-3", "--base-url", hostile.url, *option, key=KEY)
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert hostile.seen == []


# -- the key in the CLI ------------------------------------------------------------------------


async def test_the_cli_never_prints_an_echoed_key(hostile: Hostile) -> None:
    hostile.handlers[5] = CASES["401 whose code, message and requestId are the key"][0]
    hostile.handlers[6] = CASES["a 200 whose data echoes the key"][0]
    hostile.handlers[8] = answer(ok_body(8, pricing={"addons": msgspec.json.decode(nested(900))}))
    code, out, err = await run_cli("details", "5", "--base-url", hostile.url, key=KEY)
    assert code == 2 and "401" in err, err
    assert KEY not in out + err
    code, out, err = await run_cli("fetch", "6,8", "--base-url", hostile.url, "--quiet", key=KEY)
    assert code == 0, err
    assert KEY not in out + err and "Traceback" not in err
    code, out, err = await run_cli("details", "8", "--base-url", hostile.url, key=KEY)
    assert code == 0 and "addons" in out, err


async def test_deep_addons_export_without_recursion_errors(hostile: Hostile) -> None:
    hostile.handlers[8] = answer(ok_body(8, pricing={"addons": msgspec.json.decode(nested(900))}))
    async with client_for(hostile) as client:
        vm = await client.get_vm_details(8)
    data = to_builtins(vm)
    assert data["pricing"]["addons"] == msgspec.json.decode(nested(900))


# -- errors and results cross process boundaries ---------------------------------------------


async def test_errors_and_results_pickle_and_copy_with_every_field(hostile: Hostile) -> None:
    hostile.handlers[4] = answer(b'{"success": false, "code": "NOPE", "requestId": "r"}', 404)
    hostile.handlers[5] = answer(b'{"retryAfter": 2}', 429)
    async with client_for(hostile) as client:
        results = await client.fetch_vms([3, 4, 5, "x"])
    assert [r.ok for r in results] == [True, False, False, False]
    for result in results:
        for clone in (pickle.loads(pickle.dumps(result)), copy.copy(result), copy.deepcopy(result)):
            assert clone.vmid == result.vmid and clone.details == result.details
            if result.error is not None:
                assert type(clone.error) is type(result.error)
                assert vars(clone.error) == vars(result.error)
                assert clone.error.args == result.error.args
    error = results[2].error
    assert isinstance(error, RateLimitError) and error.retry_after == 2


# -- transport security ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://example.com/api", "http://10.0.0.1/api", "http://[2001:db8::1]:8080/api"]
)
def test_plain_http_to_a_remote_host_is_refused_unless_allowed(url: str) -> None:
    with pytest.raises(ConfigurationError, match="cleartext"):
        HostUpClient(KEY, base_url=url)
    assert HostUpClient(KEY, base_url=url, allow_http=True).base_url == url


@pytest.mark.parametrize(
    "url", ["http://localhost:8080/api", "http://127.0.0.2/api", "http://[::1]:1/api"]
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    assert HostUpClient(KEY, base_url=url).base_url == url


def test_bad_tls_settings_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="CA bundle"):
        HostUpClient(KEY, tls=tmp_path / "missing.pem")
    with pytest.raises(TypeError, match="tls"):
        HostUpClient(KEY, tls=True)  # type: ignore[arg-type]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_a_ca_bundle_or_context_verifies_a_private_server(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await Hostile().start(ssl_context=context)
    try:
        async with HostUpClient(KEY, base_url=server.url, tls=cert, max_retries=0) as client:
            assert (await client.get_vm_details(3)).request_id == "r-3"
        trusting = ssl.create_default_context(cafile=str(cert))
        async with HostUpClient(KEY, base_url=server.url, tls=trusting) as client:
            assert (await client.get_vm_details(4)).request_id == "r-4"
        async with HostUpClient(KEY, base_url=server.url, max_retries=0) as client:
            with pytest.raises(TransportError) as info:
                await client.get_vm_details(5)
            assert KEY not in shown(info.value)
    finally:
        await server.stop()


# -- closing from another loop -----------------------------------------------------------------


def test_aclose_from_another_loop_closes_the_connections_in_the_clients_loop() -> None:
    owner = asyncio.new_event_loop()
    server = owner.run_until_complete(Hostile().start())
    thread = threading.Thread(target=owner.run_forever, daemon=True)
    client = HostUpClient(KEY, base_url=server.url, rate_limit=None)
    try:
        thread.start()
        asyncio.run_coroutine_threadsafe(client.get_vm_details(1), owner).result(timeout=60)
        session = client._session
        run_apart(client.aclose())  # another loop, while the owner runs in its thread
        assert client.closed and session is not None and session.closed
    finally:
        owner.call_soon_threadsafe(owner.stop)
        thread.join(timeout=60)
        owner.run_until_complete(server.stop())
        owner.close()


# -- memory, measured in a subprocess ----------------------------------------------------------

#: The probe's body cap: small, so the bodies that must stop at it stay small too (the cap is a
#: constructor argument; the code that enforces it is the same for every value).
PROBE_CAP = 4 * MIB


def run_memory_probe(url: str, cap: int) -> None:
    """Fetch five VMs, four of them hostile, with a client capped at ``cap``; print the growth.

    The growth is the peak RSS in MiB above the peak before the five, which the process
    reached after its client had sent a first request (the interpreter, aiohttp, the session).
    """

    async def main() -> int:
        async with HostUpClient(
            KEY, base_url=url, rate_limit=None, max_retries=0, max_body_size=cap
        ) as client:
            assert (await client.get_vm_details(5)).request_id == "r-5"
            gc.collect()
            baseline = _peak_rss_kib()
            results = await client.fetch_vms([1, 2, 3, 4, 5])
        assert all(isinstance(r.error, ResponseTooLargeError) for r in results[:4]), results
        assert results[4].ok
        return baseline

    baseline = asyncio.run(main())
    print((_peak_rss_kib() - baseline) // 1024)


def _peak_rss_kib() -> int:
    """This process's peak RSS in KiB since it started its program (not since the fork)."""
    # ru_maxrss would count the parent's memory at fork time; VmHWM starts afresh at exec.
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _huge_log(entries: int) -> Handler:
    """A usage log of ``entries`` hours (26 bytes each), sent with its length."""
    hours = b'"2025-01-01T00:00:00Z":{},' * entries
    return answer(b'{"success":true,"data":{"usage_log":{' + hours[:-1] + b"}}}")


@pytest.mark.parametrize("kind", ["a gzip bomb", "an endless body", "a huge usage log"])
async def test_four_hostile_bodies_at_once_stay_within_the_body_cap(
    hostile: Hostile, kind: str
) -> None:
    # Each body is 4 to 16 times the cap, or endless: read whole, four of them would grow the
    # process by 64 MiB or more (before the cap held, one 1 GiB gzip bomb took 2.1 GB, and four
    # at once 5.2 GB).
    handlers: dict[str, Callable[[], Handler]] = {
        "a gzip bomb": lambda: _gzipped(_gzip_bomb(16 * PROBE_CAP)),
        "an endless body": lambda: _endless,
        "a huge usage log": lambda: _huge_log(4 * PROBE_CAP // 26),
    }
    handler = handlers[kind]()
    for vmid in (1, 2, 3, 4):
        hostile.handlers[vmid] = handler
    # The client runs in a subprocess, so its peak RSS is its own; this loop serves it.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        f"import tests.test_hostile as t; t.run_memory_probe({hostile.url!r}, {PROBE_CAP})",
        cwd=ROOT,
        env=unmeasured_env(),  # the cap's code is measured in-process, by the cases above
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    assert proc.returncode == 0, err.decode()
    growth_mib = int(out.split()[-1])
    # Four bodies at the cap and the buffers that read them (20 MiB for four bombs): less
    # than one bomb inflated, where four read whole would take 256 MiB.
    assert growth_mib < 16 * PROBE_CAP // MIB, growth_mib
