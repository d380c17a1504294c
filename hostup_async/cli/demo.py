"""The commands that run the embedded fake API: ``demo`` and ``serve-fake``."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from decimal import Decimal
from typing import IO, Any

from .._bulk import VMResult
from .._client import HostUpClient
from .commands import BulkOptions, run_bulk
from .errors import EXIT_OK, UsageError
from .output import plural
from .stats import RunStats
from .vmids import ParsedVMIDs, parse_vmids

__all__ = ["run_demo", "run_serve_fake"]

# The demo fetches the start of the demo fleet: realistic trouble, done in a few seconds.
_DEMO_FLEET = 400
_DEMO_SERVER_LIMIT = 150  # requests per second the fake accepts
_DEMO_CLIENT_RATE = 250.0  # set above the server's hidden limit on purpose


async def run_demo(args: argparse.Namespace, out: IO[str]) -> int:
    """``demo``: run a bulk fetch against the embedded fake server and summarise it."""
    from ..testing import FakeHostUp
    from ..testing._data import demo_fleet

    key = "demo-key"
    fake = FakeHostUp(
        api_key=key,
        **demo_fleet(),
        rate_limit=_DEMO_SERVER_LIMIT,
        usage_log_hours=args.hours,
    )
    async with fake:
        print(
            f"demo: fake HostUp API at {fake.url} (no key, no network needed): "
            f"{_DEMO_FLEET} VMs, some forbidden or missing, a hidden limit of "
            f"{_DEMO_SERVER_LIMIT} req/s; the client is set to {_DEMO_CLIENT_RATE:g} req/s",
            file=sys.stderr,
        )
        stats = RunStats()
        shown: list[VMResult] = []

        def keep(result: VMResult) -> None:
            """Keep the first few successful results to show."""
            if len(shown) < 5 and result.ok:
                shown.append(result)

        async with HostUpClient(
            key,
            base_url=fake.url,
            rate_limit=_DEMO_CLIENT_RATE,
            max_concurrency=16,
            on_attempt=stats.on_attempt,
        ) as client:
            await run_bulk(
                client,
                range(1, _DEMO_FLEET + 1),
                _DEMO_FLEET,
                BulkOptions(),  # details, billing cycles and usage logs; secrets masked
                out,
                stats,
                show_progress=sys.stderr.isatty(),
                write=keep,
            )
            for result in sorted(shown, key=lambda r: int(r.vmid)):
                vm, bc = result.details_or_raise(), result.billing_cycle_or_raise()
                sent = sum(s.data_sent for s in vm.usage_log.values()) / 1e9
                price = next((c.price for c in bc.cycles if c.is_current), Decimal(0))
                print(
                    f"  vm {result.vmid:>4}  {vm.hostname:<20} {plural(vm.cpu, 'core')} {vm.ram:g} GB  "
                    f"{vm.vm_status:<8} {sent:7.1f} GB sent/{len(vm.usage_log)} h  "
                    f"{bc.current_name} {price} {vm.pricing.currency if vm.pricing else ''}",
                    file=out,
                )
            print(stats.summary(client), file=sys.stderr)
    return EXIT_OK


async def run_serve_fake(args: argparse.Namespace, out: IO[str]) -> int:
    """``serve-fake``: run the fake API until interrupted."""
    from ..testing import FakeHostUp

    fleet = _fake_fleet(args)
    fake = FakeHostUp(
        api_key=args.fake_key,
        port=args.port,
        rate_limit=args.rate_limit,
        usage_log_hours=args.hours,
        **fleet,
    )
    try:
        await fake.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on port {args.port}: {exc.strerror}") from None
    try:
        print(
            f"fake HostUp API at {fake.url} (X-API-Key: {args.fake_key}); Ctrl-C stops it\n"
            f"{_describe_fleet(fleet)}",
            file=out,
        )
        out.flush()
        await asyncio.Event().wait()
    finally:
        await fake.stop()
    return EXIT_OK  # pragma: no cover - only reached by cancellation


# Most vmids --forbidden and --missing may list: the fake keeps them in memory.
_MAX_LISTED = 1_000_000


def _fake_fleet(args: argparse.Namespace) -> dict[str, Any]:
    """The fleet ``serve-fake`` serves: the demo's, changed by its options."""
    from ..testing._data import demo_fleet

    fleet = demo_fleet()
    if args.all_ok:
        fleet = {"forbidden": frozenset(), "missing": frozenset(), "max_vmid": None}
    for name in ("forbidden", "missing"):
        tokens = getattr(args, name)
        if tokens is not None:
            parsed = parse_vmids([tokens]) if tokens.strip() else ParsedVMIDs([], 0, 0)
            if parsed.total > _MAX_LISTED:
                raise UsageError(f"--{name} lists {parsed.total} vmids; at most {_MAX_LISTED:,}")
            fleet[name] = frozenset(itertools.chain(*parsed.ranges))
    if args.max_vmid is not None:
        fleet["max_vmid"] = args.max_vmid or None
    return fleet


def _describe_fleet(fleet: dict[str, Any]) -> str:
    """Say in one line which vmids answer 403 and 404."""
    from ..testing._data import DEMO_MAX_VMID, demo_fleet

    if fleet == demo_fleet():
        return (
            "the demo fleet: 403 for vmids 7, 403 and every vmid ending in 37; 404 for 42, 404, "
            f"every vmid ending in 90 and every vmid above {DEMO_MAX_VMID}"
        )

    def listed(ids: frozenset[int]) -> str:
        first = sorted(ids)[:6]
        return ", ".join(map(str, first)) + (f" and {len(ids) - 6} more" if len(ids) > 6 else "")

    missing = [listed(fleet["missing"])] if fleet["missing"] else []
    if fleet["max_vmid"] is not None:
        missing.append(f"every vmid above {fleet['max_vmid']}")
    forbidden = f"403 for vmids {listed(fleet['forbidden'])}" if fleet["forbidden"] else "no 403s"
    return f"{forbidden}; " + (f"404 for {', '.join(missing)}" if missing else "no 404s")
