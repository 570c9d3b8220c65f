"""
Every request the hook sends, and every answer the emulator gives, checked against our contract
(``dintero.yaml``), one operation at a time.

For each operation a driver calls the hook methods that send it (and whatever they need first:
tokens, a created object to read back). Then:

- every entry of the emulator's request log (method, path, host, query, and the body when the log
  keeps it) must conform to the contract;
- every exchange the hook's own HTTP session saw must conform too: its request (with the JSON body
  the hook sent) and, for a successful answer, the response fields we rely on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.contract.conftest import Exchange
from tests.contract.contract import Contract

Driver = Callable[[Any, Any, str], None]

INSIGHT_BODY = {
    "dataType": "checkout/transactions",
    "schedule": "monthly",
    "language": "en",
    "name": "Contract",
}
SRC_BODY = {"filetypes": ["pdf"], "destinations": [], "providers": []}
PROFILE_BODY = {"profile_id": "contract", "description": "Contract test", "configuration": {}}
HOOK_BODY = {
    "config": {
        "url": "https://hooks.example.com/dintero",
        "secret": {"type": "HMAC-SHA1", "value": "s3cret"},
    },
    "events": ["settlement_add"],
}


def _settlement_with_attachment(hook: Any, merchant: str) -> tuple[str, str]:
    item = next(s for s in hook.list_settlements(merchant) if s.get("attachments"))
    return item["id"], item["attachments"][0]["id"]


def _download_attachment(hook: Any, emu: Any, merchant: str) -> None:
    settlement, attachment = _settlement_with_attachment(hook, merchant)
    with hook.stream_settlement_attachment(merchant, settlement, attachment) as stream:
        stream.read()


def _follow_redirect(hook: Any, emu: Any, merchant: str) -> None:
    emu.settings.attachment_redirect = True
    _download_attachment(hook, emu, merchant)


def _download_report(hook: Any, emu: Any, merchant: str) -> None:
    report = next(r for r in hook.list_report_metadata(merchant) if r.get("signed_url"))
    with hook.stream_signed_url(report["signed_url"], account_id=merchant, description="a report") as stream:
        stream.read()


def _list_settlements(hook: Any, emu: Any, merchant: str) -> None:
    # small pages so the cursor parameters are sent, filters of every kind
    list(hook.list_settlements(merchant, limit=2, created_at_gte="2026-10-01", created_at_lte="2026-10-31"))
    list(hook.list_settlements(merchant, limit=2, item_created_at_gte="2026-10-01T00:00:00Z"))
    list(
        hook.list_settlements(
            merchant, payment_providers=["vipps", "payex"], payout_destination_id="seller-1"
        )
    )
    hook.get_settlement(merchant, emu.settlements(merchant)[0]["id"])


def _async_list_settlements(hook: Any, emu: Any, merchant: str) -> None:
    from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook

    async_hook = DinteroAsyncHook(hook.dintero_conn_id)
    asyncio.run(async_hook.async_list_settlements(merchant, limit=2, created_at_gte="2026-10-01"))


def _insight_config(hook: Any, merchant: str) -> str:
    return str(hook.create_report_configuration(merchant, INSIGHT_BODY)["id"])


def _src_config(hook: Any, merchant: str) -> str:
    return str(hook.create_settlement_report_configuration(merchant, SRC_BODY)["id"])


def _api_client(hook: Any, merchant: str) -> str:
    return str(hook.create_api_client(merchant, name="contract", description="contract test")["id"])


def _grant(hook: Any, merchant: str) -> str:
    client = _api_client(hook, merchant)
    grant = hook.create_client_grant(
        merchant, client_uuid=client, audience=hook.audience(merchant), scope=["read:settlements"]
    )
    return str(grant["id"])


def _webhook(hook: Any, merchant: str) -> str:
    return str(hook.create_webhook_subscription(merchant, HOOK_BODY)["id"])


#: operation -> the hook calls that send it (run as the partner, on merchant ``merchant``).
DRIVERS: dict[str, Driver] = {
    "get_token": lambda hook, emu, m: hook.get_token(None),
    "exchange_token": lambda hook, emu, m: hook.get_token(m),
    "list_merchants": lambda hook, emu, m: list(hook.list_merchants(limit=2, country="NO")),
    "get_account_settings": lambda hook, emu, m: (hook.get_account(m), hook.get_account(None)),
    "list_settlements": _list_settlements,
    "download_settlement_attachment": _download_attachment,
    "follow_attachment_redirect": _follow_redirect,
    "list_report_metadata": lambda hook, emu, m: list(hook.list_report_metadata(m, limit=1)),
    "download_signed_url": _download_report,
    "list_insight_configurations": lambda hook, emu, m: hook.list_report_configurations(m),
    "get_insight_configuration": lambda hook, emu, m: hook.get_report_configuration(
        m, _insight_config(hook, m)
    ),
    "create_insight_configuration": lambda hook, emu, m: _insight_config(hook, m),
    "update_insight_configuration": lambda hook, emu, m: hook.update_report_configuration(
        m, _insight_config(hook, m), {**INSIGHT_BODY, "schedule": "weekly"}
    ),
    "delete_insight_configuration": lambda hook, emu, m: hook.delete_report_configuration(
        m, _insight_config(hook, m)
    ),
    "list_settlement_report_configurations": lambda hook, emu, m: (
        _src_config(hook, m),
        list(hook.list_settlement_report_configurations(m, limit=1)),
    ),
    "create_settlement_report_configuration": lambda hook, emu, m: _src_config(hook, m),
    "update_settlement_report_configuration": lambda hook, emu, m: (
        hook.update_settlement_report_configuration(
            m, _src_config(hook, m), {**SRC_BODY, "filetypes": ["csv"]}
        )
    ),
    "delete_settlement_report_configuration": lambda hook, emu, m: (
        hook.delete_settlement_report_configuration(m, _src_config(hook, m))
    ),
    "list_api_clients": lambda hook, emu, m: hook.list_api_clients(m),
    "get_api_client": lambda hook, emu, m: hook.get_api_client(m, _api_client(hook, m)),
    "create_api_client": lambda hook, emu, m: _api_client(hook, m),
    "rotate_api_client_secret": lambda hook, emu, m: hook.rotate_api_client_secret(m, _api_client(hook, m)),
    "delete_api_client": lambda hook, emu, m: hook.delete_api_client(m, _api_client(hook, m)),
    "list_client_grants": lambda hook, emu, m: (
        _grant(hook, m),
        hook.list_client_grants(m),
        hook.list_client_grants(m, client_uuid=hook.list_api_clients(m)[0]["id"], audience=hook.audience(m)),
    ),
    "create_client_grant": lambda hook, emu, m: _grant(hook, m),
    "delete_client_grant": lambda hook, emu, m: hook.delete_client_grant(m, _grant(hook, m)),
    "list_payment_profiles": lambda hook, emu, m: hook.list_payment_profiles(m),
    "get_payment_profile": lambda hook, emu, m: hook.get_payment_profile(m, "default"),
    "create_payment_profile": lambda hook, emu, m: hook.create_payment_profile(m, PROFILE_BODY),
    "update_payment_profile": lambda hook, emu, m: hook.update_payment_profile(
        m, "default", {"description": "Updated", "configuration": {}}
    ),
    "list_webhook_subscriptions": lambda hook, emu, m: (
        _webhook(hook, m),
        hook.list_webhook_subscriptions(m),
    ),
    "create_webhook_subscription": lambda hook, emu, m: _webhook(hook, m),
    "delete_webhook_subscription": lambda hook, emu, m: hook.delete_webhook_subscription(
        m, _webhook(hook, m)
    ),
}

#: extra drivers for an operation sent by more than one code path
EXTRA_DRIVERS: dict[str, Driver] = {"list_settlements[async]": _async_list_settlements}

#: sent outside the hook's pooled ``requests`` session (httpx for triggers, a bare session for
#: signed URLs): checked through the emulator's log only
NOT_ON_HOOK_SESSION = {"list_settlements[async]", "download_signed_url"}

CASES = [pytest.param(op, driver, id=op) for op, driver in DRIVERS.items()] + [
    pytest.param(name.split("[")[0], driver, id=name) for name, driver in EXTRA_DRIVERS.items()
]
SESSION_CASES = [case for case in CASES if case.id not in NOT_ON_HOOK_SESSION]


@dataclass
class Run:
    """Runs a driver against the reset emulator and checks what it sent.

    :param contract: the contract.
    :param hook: the partner hook whose exchanges are recorded.
    :param exchanges: the exchanges its session saw (filled as it runs).
    :param emulator: the emulator.
    :param hosts: which ``host:port`` is the API host and which the checkout host.
    """

    contract: Contract
    hook: Any
    exchanges: list[Exchange]
    emulator: Any
    hosts: dict[str, str]

    def __call__(self, driver: Driver) -> list[Any]:
        """Run ``driver`` and return the emulator's request log of it."""
        self.emulator.clear_requests()
        driver(self.hook, self.emulator, self.emulator.merchant_ids[0])
        return self.emulator.requests


@pytest.fixture
def run(
    contract: Contract,
    contract_hook: tuple[Any, list[Exchange]],
    dintero_emulator: Any,
    contract_hosts: dict[str, str],
) -> Run:
    """A :class:`Run` on the emulator behind the contract connection."""
    return Run(contract, *contract_hook, dintero_emulator, contract_hosts)


def test_every_contract_operation_has_a_driver(contract: Contract) -> None:
    assert set(DRIVERS) == set(contract.operations)


@pytest.mark.parametrize(("operation", "driver"), CASES)
def test_emulator_log_conforms(operation: str, driver: Driver, run: Run) -> None:
    records = run(driver)

    matched = (run.contract.match(r.method, r.path) for r in records)
    seen = {op.name for op, _ in matched if op is not None}
    problems = [p for r in records for p in run.contract.check_request(r, run.hosts)]
    assert operation in seen, f"the driver never sent {operation}; the log has {sorted(seen)}"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("operation", "driver"), SESSION_CASES)
def test_client_exchanges_conform(operation: str, driver: Driver, run: Run) -> None:
    run(driver)

    problems: list[str] = []
    answered: set[str] = set()
    for exchange in run.exchanges:
        problems.extend(run.contract.check_request(exchange.record, run.hosts))
        op, _ = run.contract.match(exchange.record["method"], exchange.record["path"])
        if op is None or not 200 <= exchange.status < 300:
            continue
        answered.add(op.name)
        problems.extend(run.contract.check_response(op.name, exchange.json_body))
    assert operation in answered, f"no successful {operation} exchange; saw {sorted(answered)}"
    assert not problems, "\n".join(problems)
