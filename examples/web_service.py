"""An aiohttp.web service that awaits the SDK: one shared HostUpClient for every request.

    python examples/web_service.py               # serve on http://127.0.0.1:8080 (fake HostUp)
    python examples/web_service.py --demo        # start, call each endpoint once, print, exit
    HOSTUP_API_KEY=... python examples/web_service.py --port 9000

Endpoints:
    GET /vms/{vmid}                       one VM's summary (never its passwords)
    GET /fleet/bandwidth?vmids=1-20,42    bytes sent and received per VM, from the usage logs

With no HOSTUP_API_KEY and no --base-url, the service fronts the SDK's fake HostUp server.

Every call has a deadline (DEADLINE seconds, waits for the rate limit and retries included):
under overload a request the client cannot serve in time fails fast with 503 and Retry-After,
instead of queueing behind the rate limit until its caller has long given up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from hostup_async import (
    AuthenticationError,
    DeadlineExceededError,
    HostUpClient,
    HostUpError,
    InvalidVMIDError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    to_builtins,
)
from hostup_async.cli import UsageError, parse_vmids  # the command line's: 7 100-200 1,2
from hostup_async.testing import FakeHostUp

CLIENT = web.AppKey("client", HostUpClient)
MAX_FLEET = 1000  # vmids per /fleet request: keeps one request's work bounded
DEADLINE = 5.0  # seconds one HostUp call may take, waiting included: then it is shed


async def vm_summary(request: web.Request) -> web.Response:
    """GET /vms/{vmid}: the VM's specs and state, without the usage log or credentials."""
    vm = await request.app[CLIENT].get_vm_details(int(request.match_info["vmid"]), usage_log=False)
    # to_builtins turns the date and the Decimal into JSON-ready text (json_response can't).
    summary = {
        "vmid": int(request.match_info["vmid"]),
        "hostname": vm.hostname,
        "status": vm.status,
        "power": vm.vm_status,
        "cpu": vm.cpu,
        "ram_gb": vm.ram,
        "disk_gb": vm.disk,
        "ipv4": vm.ipv4,
        "next_due": vm.next_due,  # a date, or None
        "price": vm.price,  # a Decimal: exact text in the JSON
        "currency": vm.pricing.currency if vm.pricing else None,
        "request_id": vm.request_id,
    }
    return web.json_response(to_builtins(summary))


async def fleet_bandwidth(request: web.Request) -> web.Response:
    """GET /fleet/bandwidth?vmids=1-20,42: per-VM traffic from the usage logs, errors per VM."""
    try:
        # The command line's parser: ranges stay lazy, so 1-999999999 is counted, not built.
        asked = parse_vmids([request.query.get("vmids", "")])
    except UsageError:
        raise web.HTTPBadRequest(text="vmids must look like 1-20,42") from None
    if not 0 < asked.total <= MAX_FLEET:
        raise web.HTTPBadRequest(text=f"ask for 1 to {MAX_FLEET} vmids")
    vmids = [vmid for ids in asked.ranges for vmid in ids]
    vms = []
    # The client is shared by all requests, so its rate limit covers the whole service.
    async for r in request.app[CLIENT].stream_vms(vmids, ordered=True):
        if r.ok:
            log = r.details_or_raise().usage_log.values()
            vms.append(
                {
                    "vmid": r.vmid,
                    "sent": round(sum(s.data_sent for s in log)),  # bytes
                    "received": round(sum(s.data_received for s in log)),
                }
            )
        else:
            vms.append({"vmid": r.vmid, "error": error_body(r.error)})
    return web.json_response({"vms": vms})


def error_body(error: BaseException | None) -> dict[str, object]:
    """Describe a HostUp error for a JSON answer: its class, ``code`` and request id."""
    return {
        "kind": type(error).__name__,
        "code": getattr(error, "code", None),
        "request_id": getattr(error, "request_id", None),
    }


def http_status(error: HostUpError) -> int:
    """The status this service answers with when a call to HostUp fails with ``error``."""
    if isinstance(error, InvalidVMIDError):
        return 400
    if isinstance(error, (NotFoundError, PermissionDeniedError)):
        # A VM our key may not see is, to this service's callers, a VM that is not there.
        return 404
    if isinstance(error, (RateLimitError, DeadlineExceededError)):
        return 503  # with Retry-After: HostUp asked us to slow down, or we are overloaded
    if isinstance(error, AuthenticationError):
        return 500  # our key is wrong: our fault, not the caller's
    return 502  # HostUp failed or was unreachable, after the SDK's retries


@web.middleware
async def hostup_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn the SDK's errors into JSON answers, in one place."""
    try:
        return await handler(request)
    except HostUpError as exc:
        headers = {}
        if isinstance(exc, RateLimitError):
            headers["Retry-After"] = str(max(1, round(exc.retry_after or 1)))
        elif isinstance(exc, DeadlineExceededError):
            headers["Retry-After"] = "1"
        return web.json_response(
            {"error": error_body(exc)}, status=http_status(exc), headers=headers
        )


def make_app(base_url: str | None) -> web.Application:
    """Build the app; the client (and the fake server, if used) live as long as the app."""
    app = web.Application(middlewares=[hostup_errors])

    async def hostup(app: web.Application) -> AsyncIterator[None]:
        if base_url or os.environ.get("HOSTUP_API_KEY"):
            async with HostUpClient(
                base_url=base_url or "https://cloud.hostup.se/api", deadline=DEADLINE
            ) as client:
                app[CLIENT] = client
                yield
            return
        async with FakeHostUp(api_key="demo-key", forbidden={7}, missing={42}) as fake:
            print(f"No HOSTUP_API_KEY: fronting a fake HostUp at {fake.url}", file=sys.stderr)
            async with HostUpClient(
                "demo-key", base_url=fake.url, rate_limit=500, deadline=DEADLINE
            ) as client:
                app[CLIENT] = client
                yield

    app.cleanup_ctx.append(hostup)
    app.router.add_get(r"/vms/{vmid:\d+}", vm_summary)
    app.router.add_get("/fleet/bandwidth", fleet_bandwidth)
    return app


async def demo(base_url: str | None) -> None:
    """Start the service on a free loopback port, call each endpoint once, print the answers."""
    runner = web.AppRunner(make_app(base_url))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            for path in ("/vms/12", "/vms/42", "/vms/7", "/fleet/bandwidth?vmids=1-3,42"):
                async with http.get(path) as answer:
                    print(f"GET {path} -> {answer.status} {await answer.text()}")
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--base-url", help="API root (default: HostUp's)")
    parser.add_argument("--demo", action="store_true", help="call each endpoint once and exit")
    args = parser.parse_args()
    if args.demo:
        asyncio.run(demo(args.base_url))
    else:
        web.run_app(make_app(args.base_url), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
