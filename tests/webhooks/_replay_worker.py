"""A second and third api-server, as far as the replay check is concerned: a process that records
the same deliveries as its twin, each at the same instant (a barrier), through the receiver's own
recording function on the shared metadata DB."""

from __future__ import annotations

from typing import Any


def record_many(partner: str, delivery_ids: list[str], barrier: Any, results: Any) -> None:
    """
    Record each delivery once, after every process reached the barrier; put the outcomes on ``results``.

    :param partner: the account in the receiver's path.
    :param delivery_ids: the deliveries, in order.
    :param barrier: a ``multiprocessing`` barrier shared with the twin process.
    :param results: a ``multiprocessing`` queue for ``(delivery id, outcome)``.
    """
    from airflow_provider_dintero.webhooks.delivery import Delivery
    from airflow_provider_dintero.webhooks.receiver import record_settlement_event
    from airflow_provider_dintero.webhooks.settings import ReceiverSettings

    settings = ReceiverSettings(enabled=True, accounts=frozenset({partner}))
    for delivery_id in delivery_ids:
        delivery = Delivery(
            account_id=partner, event="settlement_add", event_delivery=delivery_id, settlement_ids=("s-1",)
        )
        barrier.wait(timeout=120)
        try:
            outcome, _ = record_settlement_event(partner, delivery, settings)
        except Exception as error:  # reported, not hidden: the test fails on it
            outcome = f"error: {type(error).__name__}"
        results.put((delivery_id, outcome))
