"""The pytest plugin's fixtures, configured by markers, used the way a user's suite would."""

from __future__ import annotations

import pytest

from hostup_async import (
    AuthenticationError,
    HostUpClient,
    NotFoundError,
    PermissionDeniedError,
)
from hostup_async.testing import FakeHostUp, FaultPlan
from hostup_async.testing.pytest_plugin import FIXTURE_API_KEY

pytest_plugins = ["pytester"]


async def test_defaults(hostup_fake: FakeHostUp, hostup_client: HostUpClient) -> None:
    assert hostup_fake.api_key == FIXTURE_API_KEY
    assert hostup_client.base_url == hostup_fake.url
    assert hostup_client.rate_limit is None
    vm = await hostup_client.get_vm_details(5)
    assert vm.hostname == "vm5.example.net"
    assert hostup_fake.stats.requests == 1


@pytest.mark.hostup_fake(forbidden={7}, usage_log_hours=3)
async def test_server_marker(hostup_client: HostUpClient) -> None:
    with pytest.raises(PermissionDeniedError):
        await hostup_client.get_vm_details(7)
    assert len((await hostup_client.get_vm_details(8)).usage_log) == 3


@pytest.mark.hostup_fake(faults=FaultPlan(seed=2, flaky=1.0, streak=1, kinds=("503", "drop")))
@pytest.mark.hostup_client(max_retries=2, timeout=1.0)
async def test_faults_and_client_options(
    hostup_fake: FakeHostUp, hostup_client: HostUpClient
) -> None:
    assert hostup_client.max_retries == 2 and hostup_client.timeout == 1.0
    results = await hostup_client.fetch_vms(range(1, 11), usage_log=False)
    assert all(r.ok for r in results)
    assert sum(hostup_fake.stats.faults.values()) >= 10


@pytest.mark.hostup_fake(faults=FaultPlan(missing=1.0))
@pytest.mark.hostup_client(api_key="not-the-key")
async def test_client_marker_can_send_another_key(hostup_client: HostUpClient) -> None:
    with pytest.raises(AuthenticationError):
        await hostup_client.get_vm_details(1)


@pytest.mark.hostup_fake(missing={1})
class TestClassMarker:
    @pytest.mark.hostup_fake(missing={2})
    async def test_closest_marker_wins(self, hostup_client: HostUpClient) -> None:
        await hostup_client.get_vm_details(1)
        with pytest.raises(NotFoundError):
            await hostup_client.get_vm_details(2)


def test_plugin_in_a_users_project(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "addopts = --strict-markers\nfilterwarnings = error\n"
    )
    pytester.makepyfile(
        """
        import pytest
        from hostup_async import RateLimitError
        from hostup_async.testing import FaultPlan

        @pytest.mark.hostup_fake(faults=FaultPlan(transient=1.0, kinds=("429",)))
        @pytest.mark.hostup_client(max_retries=0)
        async def test_rate_limited(hostup_client, hostup_fake):
            with pytest.raises(RateLimitError):
                await hostup_client.get_billing_cycle(3)
            assert hostup_fake.stats.faults["429"] == 1

        @pytest.mark.hostup_fake("positional")
        async def test_positional_marker_is_refused(hostup_fake):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*keyword arguments only*"])


USES_FIXTURES = """
import pytest

async def test_unmarked(hostup_client):
    assert (await hostup_client.get_vm_details(1)).hostname == "vm1.example.net"

@pytest.mark.asyncio
async def test_marked(hostup_client):
    assert (await hostup_client.get_vm_details(2)).hostname == "vm2.example.net"
"""


def test_strict_mode_says_how_to_run_an_unmarked_async_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(USES_FIXTURES)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ['*test_unmarked is an async test using the hostup_client fixture*asyncio_mode = "auto"*']
    )
    result.stdout.no_fnmatch_line("*not natively supported*")


def test_without_pytest_asyncio_the_fixtures_say_what_to_install(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(USES_FIXTURES)
    # As if pytest-asyncio were not installed: its plugin is not loaded.
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*the hostup_client fixture needs pytest-asyncio*"])
    assert "pip install 'hostup-async[test]'" in result.stdout.str()
    result.stdout.no_fnmatch_line("*fixture 'hostup_client' not found*")


def test_fixture_api_key_is_importable_from_testing() -> None:
    from hostup_async.testing import FIXTURE_API_KEY as from_testing

    assert from_testing == FIXTURE_API_KEY
