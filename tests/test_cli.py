from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hostup_async import HostUpClient
from hostup_async._constants import API_KEY_ENV, BASE_URL_ENV, SHARED_LIMIT_ENV
from hostup_async.cli import _percentile, main, parse_vmids
from hostup_async.testing import FakeHostUp

from .conftest import API_KEY, api_data, free_port

_ENV = (API_KEY_ENV, BASE_URL_ENV, SHARED_LIMIT_ENV, "HOSTUP_ASYNC_NO_RICH")


def cli_env(
    key: str | None = API_KEY, env: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """This process's environment as a CLI run sees it: the key (or none), ``env`` on top.

    A ``None`` in ``env`` leaves that variable out.
    """
    environ = {k: v for k, v in os.environ.items() if k not in _ENV}
    if key is not None:
        environ[API_KEY_ENV] = key
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


async def run_cli(
    *args: str,
    key: str | None = API_KEY,
    stdin: bytes = b"",
    env: Mapping[str, str | None] | None = None,
) -> tuple[int, str, str]:
    """Run ``hostup-async ARGS`` in this process; return its exit code, stdout and stderr.

    ``main(argv)`` on a thread of its own (it runs its own event loop, beside the test's
    fake server), with the environment, stdin, stdout and stderr a shell would give it.
    """
    return await asyncio.to_thread(_main, list(args), cli_env(key, env), stdin.decode())


def _main(argv: list[str], environ: dict[str, str], stdin: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.copy()
    os.environ.clear()
    os.environ.update(environ)
    real_stdin, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's own exits: usage errors and --help
                code = exc.code if isinstance(exc.code, int) else -1  # -1: not an exit code
    finally:
        sys.stdin = real_stdin
        os.environ.clear()
        os.environ.update(saved)
    return code, out.getvalue(), err.getvalue()


async def spawn_cli(
    *args: str,
    key: str | None = API_KEY,
    env: Mapping[str, str | None] | None = None,
    **stdio: Any,
) -> asyncio.subprocess.Process:
    """Start ``python -m hostup_async ARGS`` as a real process (pipes, terminals, signals).

    ``stdio`` are ``stdin``, ``stdout``, ``stderr`` and other keywords of
    ``create_subprocess_exec``; streams default to pipes.
    """
    for name in ("stdin", "stdout", "stderr"):
        stdio.setdefault(name, asyncio.subprocess.PIPE)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hostup_async", *args, env=cli_env(key, env), **stdio
    )


def assert_no_secrets(*texts: str, vmids: Sequence[int] = ()) -> None:
    for text in texts:
        assert API_KEY not in text
        assert "Traceback" not in text
        for vmid in vmids:
            assert api_data(f"/vm/{vmid}/details")["details"]["password"] not in text
            assert api_data(f"/vm/{vmid}/details")["details"]["rootpassword"] not in text


async def test_details_prints_pretty_json_with_secrets_masked(fake: FakeHostUp) -> None:
    code, out, err = await run_cli("details", "42", "--base-url", fake.url)
    assert code == 0, err
    vm = msgspec.json.decode(out)
    assert vm["hostname"] == "vm42.example.net"
    assert vm["details"]["password"] == "**********"
    assert (
        vm["pricing"]["price_per_cycle"] == api_data("/vm/42/details")["pricing"]["pricePerCycle"]
    )  # exact text
    assert out.startswith("{\n  ")
    assert_no_secrets(out, err, vmids=[42])


async def test_show_secrets_reveals_passwords_but_never_the_key(fake: FakeHostUp) -> None:
    code, out, err = await run_cli("details", "42", "--base-url", fake.url, "--show-secrets")
    assert code == 0
    assert (
        msgspec.json.decode(out)["details"]["password"]
        == api_data("/vm/42/details")["details"]["password"]
    )
    assert API_KEY not in out + err


async def test_billing_prints_json(fake: FakeHostUp) -> None:
    code, out, _ = await run_cli("billing", "10001", "--base-url", fake.url)
    assert code == 0
    bc = msgspec.json.decode(out)
    assert bc["cycles"][0]["price"] == "79.00"
    assert bc["current_name"] == "Monthly" and bc["cycles"][0]["is_current"] is True


async def test_details_of_a_failing_vm_exits_1_with_one_line_on_stderr(fake: FakeHostUp) -> None:
    code, out, err = await run_cli("details", "404", "--base-url", fake.url)
    assert code == 1
    assert out == ""  # nothing for `| jq` to half-read; the error is said once
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("hostup-async: vm 404: NotFoundError 404 NOT_FOUND: ")
    assert "request_id=" in err
    assert_no_secrets(out, err)


async def test_fetch_writes_json_lines_with_per_vm_errors(fake: FakeHostUp) -> None:
    code, out, err = await run_cli(
        "fetch", "1-3", "403", "404", "--billing", "--base-url", fake.url
    )
    assert code == 1
    lines = [msgspec.json.decode(line) for line in out.splitlines()]
    assert sorted(line["vmid"] for line in lines) == [1, 2, 3, 403, 404]
    by_id = {line["vmid"]: line for line in lines}
    assert by_id[1]["ok"] and by_id[1]["details"]["hostname"] == "vm1.example.net"
    assert by_id[1]["billing_cycle"]["current"] == "m"
    assert by_id[1]["details"]["details"]["password"] == "**********"
    assert by_id[403]["error"]["kind"] == "PermissionDeniedError"
    assert set(by_id[404]["error"]) == {"kind", "status", "code", "message", "request_id"}
    assert "5 VMs" in err and "3 ok, 2 failed" in err
    assert "p50" in err and "p95" in err and "429s 0" in err and "retries 0" in err
    assert_no_secrets(out, err, vmids=[1, 2, 3])


async def test_fetch_all_ok_exits_0_and_reads_stdin_and_files(
    fake: FakeHostUp, tmp_path: Path
) -> None:
    code, out, _ = await run_cli(
        "fetch", "--from-file", "-", "--base-url", fake.url, stdin=b"5\n6, 7-8\n"
    )
    assert code == 0
    assert sorted(msgspec.json.decode(x)["vmid"] for x in out.splitlines()) == [5, 6, 7, 8]
    ids = tmp_path / "ids.txt"
    ids.write_text("9 10\n")
    target = tmp_path / "out.jsonl"
    code, out, _ = await run_cli(
        "fetch",
        "--from-file",
        str(ids),
        "--out",
        str(target),
        "--no-usage-log",
        "--concurrency",
        "2",
        "--rate",
        "50",
        "--base-url",
        fake.url,
    )
    assert code == 0 and out == ""
    lines = [msgspec.json.decode(x) for x in target.read_text().splitlines()]
    assert sorted(x["vmid"] for x in lines) == [9, 10]
    assert all(x["details"]["usage_log"] == {} for x in lines)


@pytest.mark.parametrize(
    "args",
    [
        ("fetch", "12x"),
        ("fetch", "0"),
        ("fetch", "5-2"),
        ("fetch",),
        ("details", "abc"),
        ("details", "-3"),
        ("fetch", "1", "--concurrency", "0"),
        ("fetch", "--from-file", "/nonexistent"),
        ("fetch", "1", "--rate", "-5"),
        ("fetch", "1", "--rate", "nan"),
        ("fetch", "1", "--rate", "inf"),
        ("fetch", "1", "--rate", "fast"),
        ("fetch", "1", "--bogus-option"),
    ],
)
async def test_usage_errors_exit_2_with_one_line(fake: FakeHostUp, args: tuple[str, ...]) -> None:
    code, out, err = await run_cli(*args, "--base-url", fake.url)
    assert code == 2
    assert out == ""
    assert_no_secrets(err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(("hostup-async: error:", f"hostup-async {args[0]}: error:")), err
    assert fake.stats.requests == 0


@pytest.mark.parametrize(
    "args",
    [
        ("serve-fake", "--port", "99999"),
        ("serve-fake", "--port", "-1"),
        ("serve-fake", "--rate-limit", "0"),
        ("serve-fake", "--hours", "-1"),
        ("demo", "--hours", "-5"),
    ],
)
async def test_fake_server_options_are_checked_in_one_line(args: tuple[str, ...]) -> None:
    code, out, err = await run_cli(*args, key=None)
    assert code == 2
    assert out == ""
    assert err.startswith(f"hostup-async {args[0]}: error: argument {args[1]}:"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


async def test_serve_fake_on_a_port_in_use_exits_2_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = await run_cli("serve-fake", "--port", str(port), key=None)
    assert code == 2
    assert out == ""
    assert err.startswith(f"hostup-async: error: cannot listen on port {port}:"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


async def test_out_file_is_left_alone_when_settings_are_bad(
    fake: FakeHostUp, tmp_path: Path
) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("earlier results\n")
    for args, key in [
        (("fetch", "1", "--base-url", fake.url), None),
        (("fetch", "1", "--base-url", "ftp://bad.example"), API_KEY),
        (("fetch", "1", "x", "--base-url", fake.url), API_KEY),
    ]:
        code, out, err = await run_cli(*args, "--out", str(target), key=key)
        assert code == 2, err
        assert out == "" and len(err.strip().splitlines()) == 1
        assert target.read_text() == "earlier results\n"
    assert fake.stats.requests == 0


async def test_closed_stdout_stops_quietly_with_141(fake: FakeHostUp) -> None:
    read_end, write_end = os.pipe()
    proc = await spawn_cli(
        "fetch", "1-500", "--rate", "0", "--base-url", fake.url, stdout=write_end
    )
    os.close(write_end)
    try:
        # As `| head -c 4096` would: take one read, then close the pipe under the writer.
        first = await asyncio.to_thread(os.read, read_end, 4096)
    finally:
        os.close(read_end)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert first.startswith(b'{"vmid":')
    assert proc.returncode == 141
    assert err == b""  # no traceback, no "Exception ignored" at exit
    # The pipe blocks the writer long before the end: the rest was never requested.
    assert fake.stats.requests < 500


@pytest.mark.parametrize("command", ["details", "fetch"])
@pytest.mark.parametrize("key", [None, "  "], ids=["unset", "blank"])
async def test_no_key_exits_2_naming_the_variable(
    fake: FakeHostUp, command: str, key: str | None
) -> None:
    code, out, err = await run_cli(command, "1", "--base-url", fake.url, key=key)
    assert code == 2
    assert out == ""
    assert err == "hostup-async: error: no API key: set HOSTUP_API_KEY or use --api-key-file\n"
    assert fake.stats.requests == 0


async def test_empty_key_file_is_a_usage_error(fake: FakeHostUp, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("\n")
    code, _, err = await run_cli(
        "details", "1", "--api-key-file", str(key_file), "--base-url", fake.url
    )
    assert code == 2
    assert err.startswith("hostup-async: error: no API key:") and str(key_file) in err
    assert fake.stats.requests == 0


async def test_key_file_is_read_and_never_echoed(fake: FakeHostUp, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    code, out, err = await run_cli(
        "fetch", "1", "--api-key-file", str(key_file), "--base-url", fake.url, key=None
    )
    assert code == 0
    assert_no_secrets(out, err, vmids=[1])


@pytest.mark.parametrize("command", ["details", "billing"])
async def test_wrong_key_exits_2_without_echoing_it(fake: FakeHostUp, command: str) -> None:
    code, out, err = await run_cli(command, "1", "--base-url", fake.url, key="not-the-key-123")
    assert code == 2
    assert out == ""
    assert err.startswith("hostup-async: error: the API rejected the key (HTTP 401")
    assert len(err.strip().splitlines()) == 1
    assert "not-the-key-123" not in out + err
    assert fake.stats.requests == 1


async def test_wrong_key_stops_a_bulk_fetch_at_the_first_401(fake: FakeHostUp) -> None:
    code, out, err = await run_cli(
        "fetch", "1-300", "--concurrency", "4", "--base-url", fake.url, key="not-the-key-123"
    )
    assert code == 2
    assert out == ""
    assert err.startswith("hostup-async: error: the API rejected the key (HTTP 401")
    assert "HOSTUP_API_KEY" in err
    assert len(err.strip().splitlines()) == 1
    assert "not-the-key-123" not in out + err and "Traceback" not in err
    # The window ahead of the consumer, not the whole input (which would be 300).
    assert 1 <= fake.stats.requests <= 20


async def test_demo_runs_offline_and_summarises() -> None:
    code, out, err = await run_cli("demo", key=None)
    assert code == 0, err
    assert "fake HostUp API at http://127.0.0.1:" in err
    assert "400 VMs" in err and "failed (" in err and "429s" in err
    assert re.search(r"vm +\d+ +vm\d+\.example\.net", out)
    assert "Traceback" not in err and "**********" not in out


async def test_serve_fake_serves_the_api() -> None:
    port = free_port()
    proc = await spawn_cli("serve-fake", "--port", str(port), "--api-key", "k1", key=None)
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), timeout=30)).decode()
        assert f"http://127.0.0.1:{port}/api" in banner
        async with HostUpClient("k1", base_url=f"http://127.0.0.1:{port}/api") as client:
            assert (await client.get_vm_details(3)).hostname == "vm3.example.net"
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.communicate()


async def test_the_command_runs_as_a_process_with_its_exit_code_and_streams(
    fake: FakeHostUp,
) -> None:
    # Every other test calls main() in-process: this one runs `python -m hostup_async`.
    proc = await spawn_cli("fetch", "1", "404", "--base-url", fake.url)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 1
    assert sorted(msgspec.json.decode(x)["vmid"] for x in out.splitlines()) == [1, 404]
    assert b"1 ok, 1 failed (NotFoundError 1)" in err
    assert_no_secrets(out.decode(), err.decode(), vmids=[1])


def test_parse_vmids_expands_ranges_lazily() -> None:
    ranges, total, duplicates = parse_vmids(["1", "5-7", "100000-999999"])
    assert total == 1 + 3 + 900000 and duplicates == 0
    assert [list(r) for r in ranges[:2]] == [[1], [5, 6, 7]]


def test_parse_vmids_accepts_commas_and_counts_duplicates_once() -> None:
    ranges, total, duplicates = parse_vmids(["1,2", "3-4,6", "8", "2-3", "8"])
    assert [list(r) for r in ranges] == [[1, 2, 3, 4], [6], [8]]
    assert total == 6 and duplicates == 3


async def test_fetch_accepts_comma_separated_positional_vmids(fake: FakeHostUp) -> None:
    code, out, err = await run_cli("fetch", "1,2", "3-4,6", "--base-url", fake.url)
    assert code == 0, err
    assert sorted(msgspec.json.decode(x)["vmid"] for x in out.splitlines()) == [1, 2, 3, 4, 6]


@pytest.mark.parametrize("args", [("--help",), ("fetch", "--help")])
async def test_help_names_the_key_variable_and_exit_codes(args: tuple[str, ...]) -> None:
    code, out, err = await run_cli(*args, key=None)
    assert code == 0 and err == ""
    assert "HOSTUP_API_KEY" in out
    assert "exit codes:" in out
    for line in ("0 ", "1 ", "2 ", "130", "141"):
        assert re.search(rf"^  {line}", out, re.MULTILINE), line


@pytest.mark.parametrize("rich", [True, False], ids=["rich", "plain"])
async def test_progress_bar_on_a_terminal_stderr(fake: FakeHostUp, rich: bool) -> None:
    import pty

    master, slave = pty.openpty()
    environ = {"COLUMNS": "120"} | ({} if rich else {"HOSTUP_ASYNC_NO_RICH": "1"})
    proc = await spawn_cli("fetch", "1-30", "--base-url", fake.url, stderr=slave, env=environ)
    os.close(slave)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    text = err.decode(errors="replace")
    assert proc.returncode == 0
    assert len(out.splitlines()) == 30
    assert ("30/30 VMs" in text) if rich else ("30/30 VMs, 0 failed" in text), text
    assert "30 VMs in" in text
    assert API_KEY not in text


@pytest.mark.parametrize(
    ("n", "q", "expected"),
    [
        (10, 0.50, 5),  # rank ceil(5.0) = 5: not the 6th, as rounding half to even gave
        (11, 0.50, 6),
        (20, 0.95, 19),
        (10, 0.95, 10),
        (1, 0.50, 1),
        (3, 0.0, 1),
        (3, 1.0, 3),
    ],
)
def test_latency_percentiles_are_nearest_rank(n: int, q: float, expected: float) -> None:
    assert _percentile([float(v) for v in range(1, n + 1)], q) == expected
    assert _percentile([], q) == 0.0
