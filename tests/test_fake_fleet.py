"""`hostup-async serve-fake` fails like the real API: the demo's fleet by default, changeable."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from hostup_async import NotFoundError, PermissionDeniedError
from hostup_async.sync import HostUpClient

from .conftest import unmeasured_env
from .test_cli import run_cli


@contextmanager
def serve_fake(*options: str) -> Iterator[tuple[str, str]]:
    """Run ``serve-fake`` on a free port; yield its base URL and the fleet line it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostup_async", "serve-fake", "--port", "0", *options],
        stdout=subprocess.PIPE,
        text=True,
        env=unmeasured_env(),  # terminated: a measured run would never save its data
    )
    try:
        assert proc.stdout is not None
        banner, fleet = proc.stdout.readline(), proc.stdout.readline()
        found = re.search(r"(http://\S+/api)", banner)
        assert found, banner
        yield found[1], fleet
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def outcomes(url: str, vmids: list[int]) -> dict[int, str]:
    with HostUpClient("test-key", base_url=url, rate_limit=None) as client:
        results = client.fetch_vms(vmids, usage_log=False)
    return {r.vmid: type(r.error).__name__ if r.error else "ok" for r in results}


def test_the_default_fleet_is_the_demos_with_forbidden_and_missing_vms() -> None:
    with serve_fake() as (url, fleet):
        assert fleet.startswith("the demo fleet: 403 for vmids 7, 403")
        got = outcomes(url, [1, 7, 37, 137, 403, 42, 90, 404, 10415, 20000, 20001, 99999])
        forbidden, missing = "PermissionDeniedError", "NotFoundError"
        assert got == {
            1: "ok",
            7: forbidden,
            37: forbidden,
            137: forbidden,
            403: forbidden,
            42: missing,
            90: missing,
            404: missing,
            10415: "ok",
            20000: "ok",
            20001: missing,
            99999: missing,
        }
        with HostUpClient("test-key", base_url=url) as client:  # the docs' error branches
            with pytest.raises(NotFoundError):
                client.get_vm_details(99999)
            with pytest.raises(PermissionDeniedError):
                client.get_vm_details(403)


def test_options_change_the_fleet() -> None:
    with serve_fake("--forbidden", "5,8-9", "--missing", "", "--max-vmid", "100") as (url, fleet):
        assert fleet.strip() == "403 for vmids 5, 8, 9; 404 for every vmid above 100"
        got = outcomes(url, [5, 7, 9, 42, 100, 101])
        assert got == {
            5: "PermissionDeniedError",
            7: "ok",
            9: "PermissionDeniedError",
            42: "ok",
            100: "ok",
            101: "NotFoundError",
        }
    with serve_fake("--all-ok", "--missing", "3") as (url, fleet):
        assert fleet.strip() == "no 403s; 404 for 3"
        assert outcomes(url, [3, 7, 42, 99999]) == {
            3: "NotFoundError",
            7: "ok",
            42: "ok",
            99999: "ok",
        }


@pytest.mark.parametrize(
    "options", [("--forbidden", "x"), ("--missing", "1-2000000"), ("--max-vmid", "-1")]
)
async def test_bad_fleet_options_exit_2_in_one_line(options: tuple[str, ...]) -> None:
    code, _, err = await run_cli("serve-fake", "--port", "0", *options)  # fails before serving
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
