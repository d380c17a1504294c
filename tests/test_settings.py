"""What a user's own code meets first: typed results, short reprs, settings from the environment."""

from __future__ import annotations

import json
from datetime import date

import aiohttp
import msgspec
import pytest

from hostup_async import (
    ConfigurationError,
    HostUpClient,
    NotFoundError,
    TransportError,
    VMDetails,
    __version__,
)
from hostup_async.testing import FakeHostUp

from .conftest import API_KEY, closed_port
from .typed_user_code import csv_report, json_answer


async def test_the_typed_user_program_runs(client: HostUpClient) -> None:
    rows = (await csv_report(client, range(1, 4))).splitlines()
    assert rows[0].startswith("1,vm1.example.net,")
    assert len(rows) == 3
    answer = json.loads(await json_answer(client, 2))
    assert answer["vmid"] == 2
    assert date.fromisoformat(answer["next_due"])
    assert answer["price"] == "149.0"


async def test_or_raise_accessors_raise_the_vms_own_error(client: HostUpClient) -> None:
    ok, missing = await client.fetch_vms([1, 404])
    assert ok.details_or_raise() is ok.details
    with pytest.raises(NotFoundError) as caught:
        missing.details_or_raise()
    assert caught.value is missing.error
    with pytest.raises(ValueError, match="billing cycle was not fetched"):
        ok.billing_cycle_or_raise()
    (only_billing,) = await client.fetch_vms([5], details=False, billing_cycle=True)
    assert only_billing.billing_cycle_or_raise().current_name == "Annually"
    with pytest.raises(ValueError, match="details were not fetched"):
        only_billing.details_or_raise()


async def test_repr_of_a_vm_leaves_out_the_usage_log(client: HostUpClient) -> None:
    vm = await client.get_vm_details(10415)
    assert len(vm.usage_log) == 24
    text = repr(vm)
    assert "usage_log=<24 hourly samples>" in text
    assert "UsageSample" not in text and len(text) < 2000
    assert text.startswith("VMDetails(id='110415', ") and "hostname='vm10415.example.net'" in text
    assert "SecretStr('**********')" in text
    for field in msgspec.structs.fields(VMDetails):
        assert f"{field.name}=" in text
    one = msgspec.structs.replace(vm, usage_log=dict(list(vm.usage_log.items())[:1]))
    assert "usage_log=<1 hourly sample>" in repr(one)


def test_rich_pretty_printing_leaves_out_the_usage_log_too() -> None:
    from rich.pretty import pretty_repr

    vm = VMDetails(hostname="h", usage_log={})
    assert "usage_log=<0 hourly samples>" in pretty_repr(vm)


async def test_base_url_comes_from_the_environment(
    fake: FakeHostUp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTUP_BASE_URL", fake.url + "/")
    async with HostUpClient(API_KEY, rate_limit=None) as client:
        assert client.base_url == fake.url
        assert (await client.get_vm_details(3, usage_log=False)).hostname == "vm3.example.net"
    # An explicit base_url wins over the variable; a bad variable fails before any I/O.
    assert HostUpClient(API_KEY, base_url="http://127.0.0.1:1/api").base_url.endswith(":1/api")
    monkeypatch.setenv("HOSTUP_BASE_URL", "ftp://nope")
    with pytest.raises(ConfigurationError, match="base_url"):
        HostUpClient(API_KEY)
    monkeypatch.setenv("HOSTUP_BASE_URL", "")
    assert HostUpClient(API_KEY).base_url == "https://cloud.hostup.se/api"


async def test_user_agent_keeps_the_callers_token_and_adds_the_sdks(fake: FakeHostUp) -> None:
    sdk = f"hostup-async/{__version__}"
    async with HostUpClient(
        API_KEY, base_url=fake.url, rate_limit=None, user_agent="inventory-sync/2.1"
    ) as client:
        await client.get_vm_details(1, usage_log=False)
    async with aiohttp.ClientSession(headers={"User-Agent": "my-app/3.0"}) as session:
        async with HostUpClient(API_KEY, base_url=fake.url, session=session) as client:
            await client.get_vm_details(2, usage_log=False)
        async with HostUpClient(
            API_KEY, base_url=fake.url, session=session, user_agent="job/7"
        ) as client:
            await client.get_vm_details(3, usage_log=False)
    async with HostUpClient(API_KEY, base_url=fake.url) as client:
        await client.get_vm_details(4, usage_log=False)
    agents = [r.headers["User-Agent"] for r in fake.stats.recent]
    assert agents == [
        f"inventory-sync/2.1 {sdk}",
        f"my-app/3.0 {sdk}",
        f"my-app/3.0 job/7 {sdk}",
        sdk,
    ]


@pytest.mark.parametrize("bad", ["", "  ", "app/1\r\nX-Evil: 1", "appé/1"])
def test_a_user_agent_that_would_break_the_header_is_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="user_agent"):
        HostUpClient(API_KEY, user_agent=bad)
    with pytest.raises(TypeError, match="trust_env"):
        HostUpClient(API_KEY, trust_env="yes")  # type: ignore[arg-type]


async def test_trust_env_sends_requests_through_the_environments_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The "proxy" is a fake HostUp on loopback: a forward proxy gets the same request line
    # with the full URL, and this one answers it itself. The API's own address has nothing
    # listening, so only a request through the proxy can succeed.
    with closed_port() as closed:
        async with FakeHostUp(api_key=API_KEY) as proxy:
            for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/api"))
            api = f"http://127.0.0.1:{closed}/api"
            async with HostUpClient(API_KEY, base_url=api, trust_env=True, max_retries=0) as client:
                vm = await client.get_vm_details(6, usage_log=False)
            assert vm.hostname == "vm6.example.net"
            assert proxy.stats.requests == 1
            async with HostUpClient(API_KEY, base_url=api, max_retries=0) as client:
                with pytest.raises(TransportError, match="GET /vm/6/details failed"):
                    await client.get_vm_details(6, usage_log=False)
            assert proxy.stats.requests == 1  # without trust_env the variable is ignored
