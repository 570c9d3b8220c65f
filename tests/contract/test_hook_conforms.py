"""
Every request the hook sends, and every answer the emulator gives, checked against our contract
(``dintero.yaml``), one operation at a time.

Each operation's ``hook:`` entry in the contract says which hook calls send it (see the file's
header); :class:`Driving` runs them, resolving ``"{name}"`` values from the named setups below or
from another operation's calls. Then:

- every entry of the emulator's request log (method, path, host, query, and the body when the log
  keeps it) must conform to the contract;
- every exchange the hook's own HTTP session saw must conform too: its request (with the JSON body
  the hook sent) and, for a successful answer, the response fields we rely on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_dintero.hooks.dintero import DinteroAsyncHook, DinteroPartnerHook
from tests.contract.conftest import Exchange
from tests.contract.contract import Contract

#: a whole-string placeholder: ``{name}`` or ``{name.field.0.key}``
PLACEHOLDER = re.compile(r"^\{([a-z_][a-z0-9_]*)((?:\.[A-Za-z0-9_]+)*)\}$")


def _redirected_downloads(run: Driving) -> bool:
    run.emulator.settings.attachment_redirect = True
    return True


def _signed_report(run: Driving) -> Any:
    return next(r for r in run.hook.list_report_metadata(run.merchant) if r.get("signed_url"))


#: named setups a ``hook:`` entry may use besides another operation's result
SETUPS: dict[str, Callable[[Driving], Any]] = {
    "merchant": lambda run: run.merchant,
    "audience": lambda run: run.hook.audience(run.merchant),
    "settlement": lambda run: run.emulator.settlements(run.merchant)[0],
    "attached_settlement": lambda run: next(
        s for s in run.emulator.settlements(run.merchant) if s.get("attachments")
    ),
    "signed_report": _signed_report,
    "redirected_downloads": _redirected_downloads,
}


def _settle(result: Any) -> Any:
    """The result of a hook call once used up: a stream read, an iterator listed, a coroutine run."""
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    if isinstance(result, contextlib.AbstractContextManager):
        with result as stream:
            return stream.read()
    if isinstance(result, Iterator):
        return list(result)
    return result


def _dig(value: Any, path: list[str], where: str) -> Any:
    for key in path:
        try:
            value = value[int(key)] if isinstance(value, list) else value[key]
        except (KeyError, IndexError, TypeError, ValueError):
            raise AssertionError(f"{where}: no {key!r} in {value!r}") from None
    return value


def _calls(entries: Any) -> Iterator[tuple[str | None, Any]]:
    """``(method, kwargs)`` per entry of a ``hook:`` list; ``(None, "{name}")`` for a bare name."""
    for entry in entries or []:
        if isinstance(entry, str):
            yield None, entry
        else:
            ((method, kwargs),) = entry.items()
            yield method, kwargs or {}


@dataclass
class Driving:
    """One run of an operation's ``hook:`` calls against the emulator.

    :param contract: the contract.
    :param hook: the partner hook.
    :param emulator: the emulator (reset for the test).
    :param merchant: the merchant the calls act on.
    """

    contract: Contract
    hook: Any
    emulator: Any
    merchant: str
    resolved: dict[str, Any] = field(default_factory=dict)
    resolving: list[str] = field(default_factory=list)

    def run(self, operation: str, key: str = "hook") -> Any:
        """Run an operation's calls (``hook`` or ``async_hook``) and return the last result."""
        if operation not in self.contract.operations:
            raise AssertionError(f"{' -> '.join(self.resolving)}: {operation!r} is no setup and no operation")
        if operation in self.resolving:
            raise AssertionError(f"{operation} needs itself ({' -> '.join([*self.resolving, operation])})")
        target = DinteroAsyncHook(self.hook.dintero_conn_id) if key == "async_hook" else self.hook
        self.resolving.append(operation)
        result = None
        for method, kwargs in _calls(self.contract.data["operations"][operation].get(key)):
            if method is None:
                self.value(kwargs, operation)
                continue
            result = _settle(getattr(target, method)(**self.value(kwargs, operation)))
        self.resolving.pop()
        return result

    def value(self, value: Any, where: str) -> Any:
        """``value`` with every placeholder string resolved (in lists and mappings too)."""
        if isinstance(value, Mapping):
            return {k: self.value(v, where) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, where) for v in value]
        found = PLACEHOLDER.match(value) if isinstance(value, str) else None
        if found is None:
            return value
        name = found.group(1)
        if name not in self.resolved:
            setup = SETUPS.get(name)
            self.resolved[name] = setup(self) if setup else self.run(name)
        return _dig(self.resolved[name], found.group(2).split(".")[1:], f"{where}: {value}")


def _cases(contract: Contract) -> list[Any]:
    ops = contract.data["operations"]
    cases = [pytest.param(op, "hook", id=op) for op in ops]
    cases += [
        pytest.param(op, "async_hook", id=f"{op}[async]") for op, spec in ops.items() if "async_hook" in spec
    ]
    return cases


CONTRACT = Contract.load()
CASES = _cases(CONTRACT)
#: operations sent outside the hook's pooled ``requests`` session (httpx for triggers, a bare
#: session for signed URLs: ``hook_session: false``) are checked through the emulator's log only
SESSION_CASES = [
    case
    for case in CASES
    if case.values[1] == "hook" and CONTRACT.data["operations"][case.values[0]].get("hook_session", True)
]


@dataclass
class Run:
    """Runs an operation's hook calls against the reset emulator and checks what they sent.

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

    def __call__(self, operation: str, key: str = "hook") -> list[Any]:
        """Run the operation's ``key`` calls and return the emulator's request log of them."""
        self.emulator.clear_requests()
        Driving(self.contract, self.hook, self.emulator, self.emulator.merchant_ids[0]).run(operation, key)
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


def _names(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _names(v)
    elif isinstance(value, list):
        for v in value:
            yield from _names(v)
    elif isinstance(value, str) and PLACEHOLDER.match(value):
        yield PLACEHOLDER.match(value).group(1)  # type: ignore[union-attr]


@pytest.mark.parametrize(("operation", "key"), CASES)
def test_the_hook_calls_are_well_formed(contract: Contract, operation: str, key: str) -> None:
    target = DinteroAsyncHook if key == "async_hook" else DinteroPartnerHook
    calls = list(_calls(contract.data["operations"][operation].get(key)))
    problems = []
    for method, kwargs in calls:
        names = set(_names(kwargs))
        problems += [f"unknown name {n!r}" for n in names - set(SETUPS) - set(contract.operations)]
        if method is None:
            continue
        if not callable(getattr(target, method, None)) or method.startswith("_"):
            problems.append(f"{target.__name__} has no method {method!r}")
            continue
        try:
            inspect.signature(getattr(target, method)).bind(None, **kwargs)
        except TypeError as error:
            problems.append(f"{method}({', '.join(kwargs)}): {error}")
    assert any(method for method, _ in calls), f"{operation} has no {key}: calls that send it"
    assert problems == []


@pytest.mark.parametrize(("operation", "key"), CASES)
def test_emulator_log_conforms(operation: str, key: str, run: Run) -> None:
    records = run(operation, key)

    matched = (run.contract.match(r.method, r.path) for r in records)
    seen = {op.name for op, _ in matched if op is not None}
    problems = [p for r in records for p in run.contract.check_request(r, run.hosts)]
    assert operation in seen, f"the hook calls never sent {operation}; the log has {sorted(seen)}"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("operation", "key"), SESSION_CASES)
def test_client_exchanges_conform(operation: str, key: str, run: Run) -> None:
    run(operation, key)

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
