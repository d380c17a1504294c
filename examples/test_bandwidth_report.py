"""Testing your own code against the SDK's fake server, with its pytest fixtures.

    pytest examples/test_bandwidth_report.py

The plugin is registered when hostup-async is installed: ``hostup_client`` is a client for a
fresh ``hostup_fake`` server, configured per test with the ``hostup_fake`` and ``hostup_client``
markers. It needs
pytest-asyncio (here in auto mode, as this project's pyproject.toml sets it).
"""

from __future__ import annotations

import pytest
from bandwidth_report import bandwidth_report  # the code under test: examples/bandwidth_report.py

from hostup_async import HostUpClient, PermissionDeniedError
from hostup_async.testing import FakeHostUp, Fault


@pytest.mark.hostup_fake(forbidden={7}, missing={42})
async def test_report_names_the_vms_it_could_not_see(
    hostup_client: HostUpClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await bandwidth_report(hostup_client, [1, 2, 7, 42], hours=24)
    out = capsys.readouterr().out
    assert "2 VMs, 2 failed" in out
    assert "7 (PermissionDeniedError FORBIDDEN)" in out
    assert "42 (NotFoundError NOT_FOUND)" in out


async def test_report_survives_a_flaky_gateway(
    hostup_fake: FakeHostUp, hostup_client: HostUpClient, capsys: pytest.CaptureFixture[str]
) -> None:
    hostup_fake.inject(Fault.http(503, html=True), Fault.http(502))  # the next two requests
    await bandwidth_report(hostup_client, [1, 2, 3], hours=24)
    assert "3 VMs, 0 failed" in capsys.readouterr().out
    assert hostup_fake.stats.by_status[503] == 1
    assert hostup_fake.stats.by_status[502] == 1


@pytest.mark.hostup_client(max_retries=0)  # options for the client: no retries at all
async def test_without_retries_a_gateway_error_fails_that_vm(
    hostup_fake: FakeHostUp, hostup_client: HostUpClient, capsys: pytest.CaptureFixture[str]
) -> None:
    hostup_fake.inject(Fault.http(502, html=True), vmid=2)
    await bandwidth_report(hostup_client, [1, 2, 3], hours=24)
    out = capsys.readouterr().out
    assert "2 VMs, 1 failed" in out
    assert "2 (ServerError)" in out  # an HTML page carries no code


@pytest.mark.hostup_fake(forbidden={7})
async def test_single_calls_raise_typed_errors(hostup_client: HostUpClient) -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        await hostup_client.get_vm_details(7)
    assert caught.value.code == "FORBIDDEN"
