"""
Partner scale, in process: the synchronous cost of the partner-wide path's own steps at 10,000
merchants with 100 settlements each, and the event-loop lag they cause.

1. ``listed_account_ids`` over 10k / 20k / 40k listed merchants and ``Watermark.split`` over
   5k / 10k / 20k settlements of one merchant (the two steps issue 22 found quadratic);
2. the watcher (``SettlementEventProducer.open_stream`` with ``advance`` as the triggerer's ack
   mode calls it) through one sweep that finds 100 new settlements for each of N merchants, then
   one steady sweep (nothing new), with a 5 ms ticker coroutine on the same event loop measuring
   its lag (max, p99): what every other trigger of that triggerer would wait. The ticker also
   records the thread's CPU time between two ticks (``stall_cpu_*``): the synchronous stretches
   themselves, garbage collections included, without the time the machine's other processes
   took (a shared 2-core machine stretches wall-clock lag several times). ``gc_gen2_*``: the
   full collections during the watcher's run and the longest one (CPU time);
3. the partner-wide trigger's event (what ``SettlementSensor(all_merchants=True, deferrable=True)``
   defers to, stored in the trigger table) and the sensor's XCom result, serialized, at 1,000
   and 10,000 merchants with one new settlement (two attachments) each.

The Dintero side is a stand-in hook that answers from memory after one ``await`` per call, each
answer a fresh decode of a JSON page (as the hook's own decode makes: one page of settlements
with two attachments each; the HTTP stack is measured by ``bench/triggerer.py``); the state
store is a dict. Only this provider's code runs on the loop, so the figures isolate it from the
network and the emulator. Each run of the watcher is a fresh process (``--runs``, default 3):
the figures are the median and the range.

Run: ``.venv-af3/bin/python bench/partner_scale.py [--merchants 10000] [--settlements 100] [--runs 3]``;
writes ``bench/RESULTS-partner-scale.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

from airflow_provider_dintero.poller import listed_account_ids
from airflow_provider_dintero.triggers import settlement_events
from airflow_provider_dintero.triggers.settlement_events import Watermark

T0 = datetime(2027, 7, 1, 8, tzinfo=timezone.utc)
TICK = 0.005
#: The results file keeps everything from this heading on (earlier rounds' figures) when rewritten.
HISTORY = "## Earlier rounds"


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def merchant_ids(n: int) -> list[str]:
    return [f"T1{i:07d}" for i in range(1, n + 1)]


def settlement(i: int, at: datetime) -> dict[str, Any]:
    """A settlement as the list endpoint returns it: two attachments, amounts, a payout."""
    return {
        "id": f"2027070{i % 10}-{i:06d}-settlement-vipps",
        "provider": "vipps",
        "created_at": _iso(at),
        "settled_at": _iso(at),
        "payout_destination_id": "P11200001-vipps",
        "amounts": {"currency": "NOK", "gross": 100_000 + i, "fee": 250, "net": 99_750 + i},
        "attachments": [
            {"id": f"a{i:06d}-{kind}", "created_by": "dintero", "extension": kind, "content_type": "text/csv"}
            for kind in ("csv", "xlsx")
        ],
    }


def rss_now_mb() -> int:
    """The process's resident memory now (Linux), in MB: what the imports and warm-up hold."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1000)
    return 0


def timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


class StandInHook:
    """Answers like the async hook, from memory, after yielding to the loop once per call."""

    default_conn_name = "dintero_default"
    merchants: list[dict[str, Any]] = []
    page = "[]"
    calls = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def async_list_merchants(self) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        return StandInHook.merchants

    async def async_list_settlements(self, account_id: str, *, each: Any = None, **filters: Any) -> list[Any]:
        StandInHook.calls += 1
        await asyncio.sleep(0)
        page = json.loads(StandInHook.page)  # fresh objects, as the hook's decode makes them
        return page if each is None else [each(s) for s in page]  # as the hook's sink


class DictStore:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        await asyncio.sleep(0)  # the real accessor awaits the supervisor's answer
        return json.loads(self.values[key]) if key in self.values else default

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = json.dumps(value)

    async def adelete(self, key: str) -> None:
        self.values.pop(key, None)


class Ack:
    is_clean = True


class Item:
    outcome = Ack()

    def __init__(self, broker: Any) -> None:
        self.broker_payload = broker


async def watcher(n: int, per: int) -> dict[str, Any]:
    StandInHook.merchants = [{"account_id": aid} for aid in merchant_ids(n)]
    StandInHook.page = json.dumps([settlement(i, T0 + timedelta(minutes=i)) for i in range(per)])
    setattr(settlement_events, "DinteroAsyncHook", StandInHook)  # noqa: B010  # a stand-in, not an import
    store = DictStore()
    settlement_events.state_store = lambda _aid: store  # type: ignore[assignment]
    producer = settlement_events.SettlementEventProducer(
        {"account_id": "T11200000", "poll_interval": 0, "since": _iso(T0 - timedelta(days=1))}
    )
    lags: list[float] = []
    stalls: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(TICK)
            lags.append(time.perf_counter() - before - TICK)
            stalls.append(time.thread_time() - cpu)

    full: list[float] = []
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start[0] = time.thread_time()
        elif info["generation"] == 2:
            full.append(time.thread_time() - gc_start[0])

    from airflow_provider_dintero.transport import hold_async_clients

    async with hold_async_clients():  # warm up: the HTTP stack's one-time import and client
        pass
    gc.collect()  # settle what importing left pending, so the figures are the sweep's own
    rss_at_start = rss_now_mb()
    gc.callbacks.append(on_gc)
    tick = asyncio.ensure_future(ticker())
    stream = producer.open_stream()
    events = 0
    start = time.perf_counter()
    first_sweep = steady = 0.0
    async for _payload, broker in stream:
        await producer.advance([Item(broker)])  # type: ignore[list-item]
        events += 1
        if events == n:
            first_sweep = time.perf_counter() - start
            break
    calls_before = StandInHook.calls
    pending = asyncio.ensure_future(stream.__anext__())  # drives the steady sweep: nothing new
    while StandInHook.calls < calls_before + n:
        await asyncio.sleep(0.01)
    steady = time.perf_counter() - start - first_sweep
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await pending
    await stream.aclose()  # type: ignore[attr-defined]
    stop.set()
    await tick
    gc.callbacks.remove(on_gc)
    lags.sort()
    stalls.sort()
    return {
        "merchants": n,
        "settlements": n * per,
        "events": events,
        "first_sweep_s": round(first_sweep, 2),
        "steady_sweep_s": round(steady, 2),
        "lag_max_ms": round(lags[-1] * 1000, 1),
        "lag_p99_ms": round(lags[int(len(lags) * 0.99)] * 1000, 1),
        "lag_median_ms": round(statistics.median(lags) * 1000, 2),
        "stored_watermark_bytes_per_merchant": round(
            sum(len(v) for k, v in store.values.items() if k.startswith("watermarks:")) / n
        ),
        "stall_cpu_max_ms": round(stalls[-1] * 1000, 1),
        "stall_cpu_p99_ms": round(stalls[int(len(stalls) * 0.99)] * 1000, 1),
        "rss_at_start_mb": rss_at_start,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000),
        "gc_gen2_collections": len(full),
        "gc_gen2_longest_ms": round(max(full, default=0.0) * 1000, 1),
    }


def event_sizes(n: int) -> dict[str, int]:
    """
    The serialized partner-wide trigger event and the sensor's XCom result (no batches) for
    ``n`` merchants with one new settlement (two attachments) each.
    """
    from airflow_provider_dintero.poller import Sweep, sweep_payload
    from airflow_provider_dintero.sensors.settlements import SettlementSensor

    ids = merchant_ids(n)
    sweep = Sweep(found={aid: [settlement(i, T0)] for i, aid in enumerate(ids)}, checked=n)
    event = sweep_payload(sweep, _iso(T0))
    sensor = SettlementSensor(task_id="wait", all_merchants=True)
    result = sensor._many_result(json.loads(json.dumps(event)), {})  # the event as the DB returns it
    return {"event_bytes": len(json.dumps(event)), "xcom_bytes": len(json.dumps(result))}


def summary(values: list[Any]) -> str:
    """``median (min-max)`` of a figure over the runs."""
    if len(values) == 1 or len(set(values)) == 1:
        return str(values[0])
    return f"{statistics.median(values):g} ({min(values):g}-{max(values):g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--merchants", type=int, default=10_000)
    parser.add_argument("--settlements", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="watcher runs, each in a fresh process")
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--markdown", default=str(Path(__file__).with_name("RESULTS-partner-scale.md")))
    args = parser.parse_args()
    if args.one_run:
        print(json.dumps(asyncio.run(watcher(args.merchants, args.settlements))))
        return

    rows = []
    for n in (10_000, 20_000, 40_000):
        listed = [{"account_id": aid} for aid in merchant_ids(n)]
        rows.append(
            (f"listed_account_ids, {n:,} merchants", f"{timed(listed_account_ids, listed) * 1000:.1f} ms")
        )
    for n in (5_000, 10_000, 20_000):
        items = [{"id": f"s{i}", "created_at": _iso(T0 + timedelta(seconds=i))} for i in range(n)]
        rows.append(
            (
                f"Watermark.split, {n:,} settlements",
                f"{timed(Watermark(_iso(T0)).split, items) * 1000:.1f} ms",
            )
        )
    for n in (1_000, 10_000):
        for kind, size in event_sizes(n).items():
            rows.append(
                (f"partner-wide {kind.replace('_bytes', '')}, {n:,} merchants x 1 settlement", f"{size:,} B")
            )
    runs = []
    for _ in range(args.runs):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one-run",
                f"--merchants={args.merchants}",
                f"--settlements={args.settlements}",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    result = {key: summary([run[key] for run in runs]) for key in runs[0]}
    load = os.getloadavg()
    lines = [
        "# Partner scale: the provider's own synchronous steps (bench/partner_scale.py)",
        "",
        f"Machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"(shared with other sessions), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        "| step | time |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        f"Watcher, one sweep finding {args.settlements} new settlements for each of {args.merchants:,} "
        f"merchants, then one steady sweep (stand-in hook, dict store, ack after each event); "
        f"median (range) of {args.runs} runs:",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in result.items()],
        "",
    ]
    out = Path(args.markdown)
    earlier = out.read_text().partition(HISTORY)[2] if out.exists() else ""
    out.write_text("\n".join(lines) + (f"\n{HISTORY}{earlier}" if earlier else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
