"""How an async client lives with its event loop: closed with it, and clear when misused.

A client's session belongs to the event loop it was opened in. ``hold_for_the_loop`` ties
what the client opened to that loop's life, so it is closed on that loop even when nobody
calls ``aclose()``; the messages say what to write instead when sync code meets the
async client.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import aiohttp

from ._pacing import Pacer

__all__ = ["NOT_A_WITH", "NO_LOOP", "OTHER_LOOP", "hold_for_the_loop"]

NOT_A_WITH = (
    "HostUpClient is async: write `async with HostUpClient() as client:` inside an "
    "`async def` (in Jupyter, at top level), or use hostup_async.sync.HostUpClient for `with`"
)
NO_LOOP = (
    "HostUpClient is async and no event loop is running here: inside an `async def` run by "
    "asyncio.run(), write `await client.get_vm_details(...)` and `async for r in "
    "client.stream_vms(...)`; in synchronous code use hostup_async.sync.HostUpClient"
)
OTHER_LOOP = (
    "this HostUpClient belongs to the event loop it was first used in, and each asyncio.run() "
    "starts a new one: create the client inside the coroutine that asyncio.run() runs (one "
    "client per event loop), or use hostup_async.sync.HostUpClient from synchronous code"
)


def hold_for_the_loop(
    session: aiohttp.ClientSession | None, pacer: Pacer
) -> AsyncGenerator[None, None]:
    """Hold ``session`` (when the client owns it) and ``pacer`` until closed or the loop ends.

    Returns an async generator already suspended inside the running loop, so the loop
    itself ends it: ``asyncio.run()`` closes every live one before closing the loop, and
    one dropped with its client is closed on the loop too. So a client outliving its
    ``asyncio.run()``, or dropped unclosed (a notebook cell run again), still closes its
    session on its own loop, and nothing warns of an unclosed one. ``aclose()`` on it
    closes them at once. It holds the parts, never the client, so it keeps no dropped
    client alive.
    """
    held = _held(session, pacer)
    step = held.asend(None)  # the running loop's first-iteration hook registers it here
    try:
        step.send(None)
    except StopIteration:
        return held  # suspended at its yield, as meant
    raise RuntimeError("hold_for_the_loop: awaited before its yield")  # pragma: no cover


async def _held(session: aiohttp.ClientSession | None, pacer: Pacer) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        if session is not None:
            await session.close()
        await pacer.aclose()
