"""The command line as a new user meets it: on a terminal, with typos, with a wrong URL."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import signal
import struct
import termios
import threading
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from hostup_async.cli import UsageError, parse_vmids
from hostup_async.cli.vmids import VMIDSyntaxError, parse_one
from hostup_async.testing import FakeHostUp, Fault

from .conftest import API_KEY, closed_port
from .test_cli import assert_no_secrets, run_cli, spawn_cli

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """The CLI run under a pseudo-terminal, as a user at a terminal runs it."""

    def __init__(self, *args: str, columns: int = 120, stdout_on_terminal: bool = True) -> None:
        self.args = args
        self.columns = columns
        self.stdout_on_terminal = stdout_on_terminal
        self.raw = bytearray()
        self.stdout = b""
        self.returncode: int | None = None
        self._seen = threading.Condition()

    async def run(self, interrupt_after: bytes | None = None) -> None:
        master, slave = pty.openpty()
        # The window size a terminal of that width reports (rich asks the terminal itself).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, self.columns, 0, 0))
        # PYTHONUNBUFFERED (set on some CI machines) makes stdout's text layer write to the
        # raw file, and CPython drops the rest of a line when a signal cuts the kernel's
        # write short: a user's terminal has the default, buffered stdout.
        proc = await spawn_cli(
            *self.args,
            env=dict.fromkeys(("COLUMNS", "LINES", "PYTHONUNBUFFERED")),
            stdin=slave,
            stdout=slave if self.stdout_on_terminal else asyncio.subprocess.PIPE,
            stderr=slave,
            start_new_session=True,  # its own process group, as a shell's foreground job
        )
        os.close(slave)
        reader = threading.Thread(target=self._read, args=(master,))
        reader.start()
        try:
            if interrupt_after is not None:
                await asyncio.wait_for(asyncio.to_thread(self._wait_for, interrupt_after), 60)
                proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground job
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
            self.stdout = out or b""
            self.returncode = proc.returncode
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await asyncio.to_thread(reader.join)
            os.close(master)

    def _read(self, master: int) -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal is gone
                return
            if not chunk:
                return
            with self._seen:
                self.raw.extend(chunk)
                self._seen.notify_all()

    def _wait_for(self, marker: bytes) -> None:
        with self._seen:
            self._seen.wait_for(lambda: marker in self.raw)

    @property
    def text(self) -> str:
        """What was written to the terminal, escape sequences removed, line ends as ``\\n``."""
        return _ESCAPES.sub("", self.raw.decode(errors="replace")).replace("\r\n", "\n")


def json_lines_on_screen(text: str) -> list[dict[str, object]]:
    """Return the JSON objects the screen shows, failing on a line glued to anything else."""
    objects = []
    for line in text.split("\n"):
        # A carriage return goes back to the start of the row; what follows overwrites it.
        visible = line.rsplit("\r", 1)[-1]
        if '{"vmid"' in line:
            assert visible.startswith('{"vmid"'), f"output glued to other text: {line[:200]!r}"
            objects.append(msgspec.json.decode(visible))
    return objects


async def test_output_and_progress_share_a_terminal_without_garbling(fake: FakeHostUp) -> None:
    term = Terminal("fetch", "1-40", "--no-usage-log", "--rate", "100", "--base-url", fake.url)
    await term.run()
    assert term.returncode == 0
    assert sorted(int(str(o["vmid"])) for o in json_lines_on_screen(term.text)) == list(
        range(1, 41)
    )
    assert "40/40 VMs" in term.text  # the bar was drawn, below the lines
    assert term.text.count("40 VMs in") == 1
    assert API_KEY not in term.text


async def test_a_narrow_terminal_keeps_the_count(fake: FakeHostUp) -> None:
    term = Terminal(
        "fetch", "1-12", "--base-url", fake.url, "--out", os.devnull, "--rate", "0", columns=60
    )
    await term.run()
    assert term.returncode == 0
    bar_rows = [row for row in re.split(r"[\r\n]", term.text) if "━" in row]
    assert bar_rows and all(re.match(r"\d+/12 VMs ", row) for row in bar_rows), bar_rows
    assert all(len(row.rstrip()) <= 60 for row in bar_rows)
    assert "12/12 VMs" in term.text


async def test_stdout_to_a_pipe_keeps_clean_lines_while_the_bar_is_on_stderr(
    fake: FakeHostUp,
) -> None:
    term = Terminal("fetch", "1-20", "--base-url", fake.url, stdout_on_terminal=False)
    await term.run()
    assert term.returncode == 0
    lines = term.stdout.decode().splitlines()
    assert sorted(msgspec.json.decode(x)["vmid"] for x in lines) == list(range(1, 21))
    assert "20/20 VMs" in term.text and '"vmid"' not in term.text


async def test_ctrl_c_stops_with_a_summary_of_how_far_it_got() -> None:
    async with FakeHostUp(api_key=API_KEY, latency=0.05) as slow:
        term = Terminal("fetch", "1-2000", "--rate", "0", "--base-url", slow.url)
        await term.run(interrupt_after=b'{"vmid"')
    assert term.returncode == 130
    text = term.text
    found = re.search(r"interrupted after (\d+) of 2000 VMs", text)
    assert found, text[-2000:]
    shown = json_lines_on_screen(text)
    assert int(found.group(1)) >= len(shown) >= 1  # every line shown was counted
    after = text[found.start() :]
    assert "━" not in after  # the bar is gone, not drawn again under the summary
    assert "Traceback" not in text and API_KEY not in text


# -- failing fast on a wrong URL ----------------------------------------------------------


@pytest.mark.parametrize("command", [("fetch", "1-300"), ("details", "5")])
async def test_nothing_listening_exits_2_naming_the_url(command: Sequence[str]) -> None:
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/api"
        code, out, err = await run_cli(*command, "--base-url", url)
    assert code == 2
    assert out == ""
    assert err == (
        f"hostup-async: error: cannot connect to {url}: check --base-url "
        "(or $HOSTUP_BASE_URL) and that the server is up\n"
    )


async def test_a_dead_url_stops_at_the_first_attempts_not_after_every_retry() -> None:
    # A process of its own: -v configures logging, which is the process's, not the test's.
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/api"
        args = ("fetch", "1-300", "--rate", "0", "--max-retries", "5", "-v", "--base-url", url)
        proc = await spawn_cli(*args)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    code, out, err = proc.returncode, stdout.decode(), stderr.decode()
    assert code == 2 and out == ""
    assert err.endswith(
        f"cannot connect to {url}: check --base-url (or $HOSTUP_BASE_URL) and that the server is up\n"
    )
    # -v logs every attempt: a few, not the first VMs' full retries (10 slots x 6 tries).
    attempts = err.count("GET /vm/")
    assert 3 <= attempts <= 30, err


@pytest.mark.parametrize("command", [("fetch", "1-300"), ("details", "5"), ("billing", "5")])
async def test_a_bare_404_page_exits_2_pointing_at_the_path(
    fake: FakeHostUp, command: Sequence[str]
) -> None:
    url = fake.url.removesuffix("/api")  # the classic mistake: /api left off
    code, out, err = await run_cli(*command, "--base-url", url)
    assert code == 2
    assert out == ""
    assert err.startswith(f"hostup-async: error: {url} answered 404 with a page that is not")
    assert "ending in /api" in err and len(err.splitlines()) == 1
    # Stopped at the first answers, not after all 300.
    assert fake.stats.requests <= 30


async def test_missing_vms_on_a_real_api_are_failures_not_a_wrong_url(fake: FakeHostUp) -> None:
    code, out, err = await run_cli("fetch", "404", "1", "--base-url", fake.url)
    assert code == 1
    assert len(out.splitlines()) == 2
    assert "1 ok, 1 failed (NotFoundError 1)" in err


# -- options -------------------------------------------------------------------------------


async def test_help_shows_the_defaults() -> None:
    code, out, _ = await run_cli("fetch", "--help", key=None)
    assert code == 0
    flat = " ".join(out.split())
    for option, default in [
        ("--rate R", "10"),
        ("--concurrency N", "10"),
        ("--timeout SECONDS", "30"),
    ]:
        assert re.search(rf"{re.escape(option)} .*?default: {default}\b", flat), (option, flat)


async def test_a_wrong_option_points_at_the_commands_help(fake: FakeHostUp) -> None:
    code, _, err = await run_cli("details", "1", "--bogus", "--base-url", fake.url)
    assert code == 2
    assert err == (
        "hostup-async details: error: unrecognized arguments: --bogus "
        "(see hostup-async details --help)\n"
    )


async def test_details_can_leave_out_the_usage_log(fake: FakeHostUp) -> None:
    code, out, _ = await run_cli("details", "7", "--no-usage-log", "--base-url", fake.url)
    assert code == 0
    assert msgspec.json.decode(out)["usage_log"] == {}


async def test_max_retries_and_timeout_reach_the_client(fake: FakeHostUp) -> None:
    fake.inject(Fault.http(503), vmid=3)
    code, out, err = await run_cli("details", "3", "--max-retries", "0", "--base-url", fake.url)
    assert code == 1 and out == ""
    assert "ServerError 503" in err
    fake.inject(Fault.slow(5.0), vmid=4)
    code, _, err = await run_cli(
        "details", "4", "--timeout", "0.2", "--max-retries", "0", "--base-url", fake.url
    )
    assert code == 1
    assert "RequestTimeoutError" in err and "0.2 s" in err


async def test_verbose_logs_every_attempt_to_stderr(fake: FakeHostUp) -> None:
    # A process of its own: -v configures logging, which is the process's, not the test's.
    proc = await spawn_cli("fetch", "1-2", "-v", "--base-url", fake.url)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    code, out, err = proc.returncode, stdout.decode(), stderr.decode()
    assert code == 0 and len(out.splitlines()) == 2
    assert re.search(r"GET /vm/1/details -> 200", err), err
    assert_no_secrets(out, err, vmids=[1, 2])


async def test_csv_and_table_formats(fake: FakeHostUp, tmp_path: Path) -> None:
    target = tmp_path / "fleet.csv"
    code, out, _ = await run_cli(
        "fetch", "1-3", "403", "-o", "csv", "--out", str(target), "--base-url", fake.url
    )
    assert code == 1 and out == ""
    import csv

    rows = list(csv.DictReader(target.read_text().splitlines()))
    assert sorted(int(r["vmid"]) for r in rows) == [1, 2, 3, 403]
    by_id = {int(r["vmid"]): r for r in rows}
    assert by_id[1]["hostname"] == "vm1.example.net" and by_id[1]["ok"] == "yes"
    assert by_id[403]["error"] == "PermissionDeniedError 403 FORBIDDEN"
    code, out, _ = await run_cli("fetch", "1-2", "-o", "table", "--base-url", fake.url)
    header, *rows_ = out.splitlines()
    assert header.split()[:3] == ["VMID", "OK", "HOSTNAME"]
    assert sorted(r.split()[2] for r in rows_) == ["vm1.example.net", "vm2.example.net"]
    assert "**********" not in out


# -- vmids and messages in the command line's words --------------------------------------


@pytest.mark.parametrize(
    ("vmids", "message"),
    [
        ("+5", "not a vmid or range: '+5'"),
        ("1,,2", "empty item in '1,,2'"),
        ("1,", "empty item in '1,'"),
        ("\uff10\uff17", "not a vmid or range"),  # full-width digits
        ("1_000", "not a vmid or range: '1_000'"),
        (" 7", "not a vmid or range: ' 7'"),
        ("12345678901234567890123", "vmid too large"),
        ("0", "vmids start at 1: '0'"),
        ("5-2", "range '5-2' runs backwards: write 2-5"),
    ],
)
def test_vmids_are_ascii_ids_and_ranges_only(vmids: str, message: str) -> None:
    # `fetch` reads lists and ranges, `details` one vmid: the same grammar, the same words.
    with pytest.raises(UsageError) as listed:
        parse_vmids([vmids])
    assert message in str(listed.value) and "\n" not in str(listed.value)
    with pytest.raises(VMIDSyntaxError) as single:
        parse_one(vmids)
    assert message in str(single.value)
    with pytest.raises(VMIDSyntaxError, match="expected one vmid, got '1-3'"):
        parse_one("1-3")


@pytest.mark.parametrize("command", ["fetch", "details"])
async def test_a_bad_vmid_is_a_one_line_usage_error_before_any_request(
    fake: FakeHostUp, command: str
) -> None:
    code, out, err = await run_cli(command, "1_000", "--base-url", fake.url)
    assert code == 2 and out == ""
    assert err == (
        "hostup-async: error: not a vmid or range: '1_000': "
        "use ids such as 7 and ranges such as 100-200, separated by commas\n"
    )
    assert fake.stats.requests == 0


async def test_duplicates_are_fetched_once_and_said(fake: FakeHostUp) -> None:
    code, out, err = await run_cli("fetch", "1-3", "2", "3,3", "--base-url", fake.url)
    assert code == 0
    assert sorted(msgspec.json.decode(x)["vmid"] for x in out.splitlines()) == [1, 2, 3]
    assert "3 duplicate vmids fetched once" in err
    assert fake.stats.requests == 3


async def test_a_csv_header_in_from_file_names_the_file_and_line(
    fake: FakeHostUp, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text("vmid,name\n7,web\n")
    code, _, err = await run_cli("fetch", "--from-file", str(ids), "--base-url", fake.url)
    assert code == 2
    assert err.startswith(f"hostup-async: error: --from-file {ids}, line 1: not a vmid")
    ids.write_text("7\n8 web\n")
    code, _, err = await run_cli("fetch", "--from-file", str(ids), "--base-url", fake.url)
    assert f"--from-file {ids}, line 2: not a vmid or range: 'web'" in err
    assert fake.stats.requests == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("fetch", "--from-file", "EMPTY"), "no vmids in --from-file EMPTY"),
        (("fetch",), "no vmids given: pass ids or ranges"),
        (("fetch", "1", "--no-details"), "nothing to fetch: --no-details needs --billing"),
        (("fetch", "1", "--base-url", "http://a b"), "--base-url must not contain whitespace"),
        (("fetch", "1", "--base-url", "ftp://x"), "--base-url must be an absolute http(s) URL"),
        (("details", "1", "--api-key-file", "MISSING"), "cannot read --api-key-file MISSING:"),
    ],
)
async def test_messages_use_the_command_lines_words(
    fake: FakeHostUp, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    empty, missing = tmp_path / "empty.txt", tmp_path / "missing.txt"
    empty.write_text("\n")
    args = tuple(a.replace("EMPTY", str(empty)).replace("MISSING", str(missing)) for a in args)
    message = message.replace("EMPTY", str(empty)).replace("MISSING", str(missing))
    if "--base-url" not in args:
        args += ("--base-url", fake.url)
    code, out, err = await run_cli(*args)
    assert code == 2 and out == ""
    assert err.startswith(f"hostup-async: error: {message}"), err
    assert "base_url" not in err and "billing_cycle" not in err
    assert fake.stats.requests == 0


async def test_counts_in_words_are_singular_or_plural(fake: FakeHostUp) -> None:
    _, _, err = await run_cli("fetch", "1", "--base-url", fake.url)
    assert err.startswith("1 VM in ")
    _, _, err = await run_cli("fetch", "1-2", "--base-url", fake.url)
    assert err.startswith("2 VMs in ")


async def test_summary_hints_at_rate_when_waiting_dominated(fake: FakeHostUp) -> None:
    # 8 VMs at 4 req/s with room for all in flight: the limiter holds them back about 7 s in
    # all, which only attempts of almost a second each on a loopback server could outweigh.
    code, _, err = await run_cli(
        "fetch", "1-8", "--rate", "4", "--concurrency", "8", "--base-url", fake.url
    )
    assert code == 0
    assert "hint: requests spent most of their time waiting for the client-side rate" in err
    assert "rate limit of 4 req/s" in err and "raise --rate" in err
    code, _, err = await run_cli("fetch", "1-8", "--rate", "0", "--base-url", fake.url)
    assert code == 0 and "hint:" not in err
