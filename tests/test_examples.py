"""The scripts in examples/ run as a user would run them, against the fake server they start."""

from __future__ import annotations

import csv
import io
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

from hostup_async import HostUpClient
from hostup_async.testing import FakeHostUp

from .conftest import USERS_PYTEST, RedisServer, free_port, run_apart, unmeasured_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 60  # seconds; generous for a noisy machine, each script takes about one

# Passwords of the fake's VMs look like this; they must never be printed.
SECRET = re.compile(r"fake-(root|pw)-[0-9a-f]{12}")


def example_env() -> dict[str, str]:
    """The environment of a user with no key: every example then starts its own fake server."""
    env = {k: v for k, v in unmeasured_env().items() if k != "HOSTUP_API_KEY"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_python(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python *args`` in the project's folder with :func:`example_env` (and ``env``): it ran
    to a clean exit and printed no password."""
    result = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=example_env() | env,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not SECRET.search(result.stdout + result.stderr)
    return result


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_python(str(EXAMPLES / script), *args)


def test_every_example_is_tested() -> None:
    tested = {
        "quickstart.py",
        "bandwidth_report.py",
        "billing_audit.py",
        "web_service.py",
        "test_bandwidth_report.py",
        "shared_limit.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_shared_limit_two_processes(redis_server: RedisServer) -> None:
    # 20 VMs a process, not the default 60: 40 requests at the shared 20 a second take 2 s
    # (120 took 6); the two still overlap for all of it, sharing one limit through Redis.
    result = run_python(
        str(EXAMPLES / "shared_limit.py"), "20", HOSTUP_SHARED_LIMIT=redis_server.url
    )
    assert "worker 1: 20 of 20 VMs" in result.stdout
    assert "worker 2: 20 of 20 VMs" in result.stdout
    assert "pacing alone" not in result.stdout  # Redis was there: they shared all along


def test_quickstart() -> None:
    out = run("quickstart.py").stdout
    assert "vm10415.example.net: 8 cores, 16 GB RAM, Active/running" in out
    assert "24 hourly samples" in out
    assert "password=SecretStr('**********')" in out
    assert "Annually: 2880.00 (current)" in out
    assert "404 as expected: NOT_FOUND" in out


async def expected_traffic(vmid: int) -> tuple[float, float]:
    """Sent and received bytes over a whole 24-hour log, computed here with the SDK itself."""
    async with FakeHostUp(api_key="k") as fake, HostUpClient("k", base_url=fake.url) as client:
        vm = await client.get_vm_details(vmid)
    return (
        sum(s.data_sent for s in vm.usage_log.values()),
        sum(s.data_received for s in vm.usage_log.values()),
    )


def test_bandwidth_report() -> None:
    result = run("bandwidth_report.py")
    lines = result.stdout.splitlines()
    assert lines[0] == "Bandwidth over the last 24 h: 58 VMs, 2 failed"
    rows = {int(line.split()[0]): line.split() for line in lines[2:] if line.split()[0].isdigit()}
    assert sorted(rows) == [v for v in range(1, 61) if v not in (7, 42)]
    totals = [float(row[-1]) for row in rows.values()]
    assert totals == sorted(totals, reverse=True)  # busiest first
    sent, received = run_apart(expected_traffic(12))
    assert rows[12][1:] == [
        "vm12.example.net",
        f"{sent / 1e9:.2f}",
        f"{received / 1e9:.2f}",
        f"{(sent + received) / 1e9:.2f}",
    ]
    fleet = next(line for line in lines if line.split()[0] == "fleet").split()
    assert float(fleet[1]) == pytest.approx(sum(float(r[2]) for r in rows.values()), abs=0.01 * 58)
    assert lines[-1] == "failed: 7 (PermissionDeniedError FORBIDDEN), 42 (NotFoundError NOT_FOUND)"
    # The fake's injected 503 was retried: the report is whole and says so.
    assert re.search(r"\b[1-9]\d* retries", result.stderr)


def test_bandwidth_report_for_chosen_vmids_and_window() -> None:
    out = run("bandwidth_report.py", "3", "10-12", "--hours", "2").stdout
    lines = out.splitlines()
    assert lines[0] == "Bandwidth over the last 2 h: 4 VMs, 0 failed"
    assert sorted(int(line.split()[0]) for line in lines[2:6]) == [3, 10, 11, 12]


def check_audit(text: str) -> None:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["vmid"]) for r in rows] == list(range(1, 61))  # input order, failures included
    by_vmid = {int(r["vmid"]): r for r in rows}
    assert by_vmid[7]["error"] == "PermissionDeniedError FORBIDDEN"
    assert by_vmid[42]["error"] == "NotFoundError NOT_FOUND"
    assert by_vmid[7]["request_id"]
    ok = [r for r in rows if not r["error"]]
    assert len(ok) == 58
    for r in ok:
        saving = Decimal(r["monthly_price"]) * 12 - Decimal(r["annual_price"])
        assert Decimal(r["annual_saving"]) == saving
        assert r["currency"] == "SEK"
        assert r["billing_cycle"] in ("Monthly", "Annually")
    assert by_vmid[5]["billing_cycle"] == "Annually"  # the fake bills every fifth VM annually


def test_billing_audit_to_stdout() -> None:
    result = run("billing_audit.py")
    check_audit(result.stdout)
    assert "audited 60 VMs: 58 ok, 2 failed" in result.stderr


def test_billing_audit_to_file(tmp_path: Path) -> None:
    out = tmp_path / "audit.csv"
    result = run("billing_audit.py", "--out", str(out))
    assert result.stdout == ""
    check_audit(out.read_text(encoding="utf-8"))


def test_web_service_demo() -> None:
    out = run("web_service.py", "--demo").stdout
    answers = dict(re.findall(r"^GET (\S+) -> (\d+) ", out, re.MULTILINE))
    assert answers == {
        "/vms/12": "200",
        "/vms/42": "404",
        "/vms/7": "404",
        "/fleet/bandwidth?vmids=1-3,42": "200",
    }
    assert '"hostname": "vm12.example.net"' in out
    assert '"code": "NOT_FOUND"' in out
    assert '"kind": "PermissionDeniedError"' in out


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.skipif(sys.platform == "win32", reason="stops the server with SIGINT")
def test_web_service_serves_until_interrupted() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "web_service.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=example_env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        # A watchdog instead of a clock check: a server that never starts is killed, which
        # ends the read loop below and fails the test.
        watchdog = threading.Timer(TIMEOUT, proc.kill)
        watchdog.start()
        try:
            for line in proc.stdout:
                if "Running on" in line:
                    break
            else:
                pytest.fail("the web service exited (or was killed) before serving")
        finally:
            watchdog.cancel()
        base = f"http://127.0.0.1:{port}"
        status, body = get(base + "/vms/10")
        assert status == 200
        assert '"hostname": "vm10.example.net"' in body
        assert get(base + "/vms/0")[0] == 400  # InvalidVMIDError, raised before any request
        assert get(base + "/fleet/bandwidth?vmids=x")[0] == 400
        assert get(base + "/fleet/bandwidth?vmids=1-999999999")[0] == 400  # counted, not built
        status, body = get(base + "/fleet/bandwidth?vmids=1-2")
        assert status == 200
        assert body.count('"sent"') == 2
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_testing_example_passes_under_pytest() -> None:
    result = run_python(
        "-m", "pytest", "-q", *USERS_PYTEST, str(EXAMPLES / "test_bandwidth_report.py")
    )
    assert "4 passed" in result.stdout
