"""
The receiver's memory of delivery ids, shared by every api-server on one metadata DB.

One small table of this provider's own, ``dintero_webhook_deliveries``, keyed by (the account in
the receiver's path, the delivery id). Recording a delivery inserts its row in the same
transaction as its asset event: a second api-server receiving the same delivery at the same
instant inserts the same key, the database refuses it (the primary key), and that api-server
answers ``duplicate`` without recording an event. No process lock and no query on the asset
events' JSON ``extra`` (which Airflow 3.0 and 3.1 store as a ``JSONField`` that SQL cannot
index into) are involved.

The table is created the first time a receiver needs it (``CREATE TABLE`` if it does not
exist, tolerant of another api-server creating it at the same moment); Airflow's migrations
neither know nor touch it. Rows older than the replay window are deleted as new deliveries
arrive (at most once every ten minutes per process); a delivery replayed after the window is
taken as a new wake-up, which is harmless: the consumer finds its files already copied.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Column, Integer, MetaData, PrimaryKeyConstraint, String, Table, delete, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

log = logging.getLogger(__name__)

TABLE_NAME = "dintero_webhook_deliveries"

_METADATA = MetaData()


def _utc_type() -> Any:
    from airflow.utils.sqlalchemy import UtcDateTime

    return UtcDateTime(timezone=True)


DELIVERIES = Table(
    TABLE_NAME,
    _METADATA,
    Column("account_id", String(16), nullable=False),
    Column("event_delivery", String(128), nullable=False),
    Column("received_at", _utc_type(), nullable=False, index=True),
    Column("asset_event_id", Integer, nullable=True),
    PrimaryKeyConstraint("account_id", "event_delivery", name=f"{TABLE_NAME}_pkey"),
)

_created: set[str] = set()
_create_lock = threading.Lock()
_last_cleanup = 0.0
#: Seconds between two deletions of expired rows by one process.
CLEANUP_EVERY = 600.0


def ensure_table(bind: Any) -> None:
    """
    Create the table if it does not exist (once per process and database URL).

    :param bind: a SQLAlchemy engine or connection to the metadata DB.
    """
    engine = getattr(bind, "engine", bind)
    url = str(engine.url)
    if url in _created:
        return
    with _create_lock:
        if url in _created:
            return
        try:
            DELIVERIES.create(engine, checkfirst=True)
        except (OperationalError, ProgrammingError, IntegrityError):
            # another api-server created it between the check and the CREATE
            DELIVERIES.create(engine, checkfirst=True)
        _created.add(url)


def claim(session: Any, account_id: str, event_delivery: str, window: timedelta) -> int | None:
    """
    Insert the delivery's row in the session's transaction, or find who has it.

    Returns ``None`` when the row is this session's now (the caller records the asset event and
    then :func:`attach` its id; committing makes the claim visible to every api-server). When
    another transaction holds the key, the session is rolled back and the asset event id on
    the existing row is returned (``0`` if it has none yet). A row older than ``window`` is
    replaced (the delivery counts as new).

    :param session: a SQLAlchemy session on the metadata DB, with nothing else pending.
    :param account_id: the account in the receiver's path.
    :param event_delivery: the delivery id.
    :param window: how long a delivery id is remembered.
    """
    ensure_table(session.get_bind())
    now = datetime.now(timezone.utc)
    key = (DELIVERIES.c.account_id == account_id) & (DELIVERIES.c.event_delivery == event_delivery)
    _cleanup(session, now - window)
    session.execute(delete(DELIVERIES).where(key, DELIVERIES.c.received_at < now - window))
    try:
        session.execute(
            DELIVERIES.insert().values(account_id=account_id, event_delivery=event_delivery, received_at=now)
        )
        session.flush()
        return None
    except IntegrityError:
        session.rollback()
    existing = session.execute(select(DELIVERIES.c.asset_event_id).where(key)).scalar()
    return int(existing or 0)


def attach(session: Any, account_id: str, event_delivery: str, asset_event_id: int) -> None:
    """
    Note the asset event recorded for a claimed delivery (for the ``duplicate`` answer).

    :param session: the session that claimed it.
    :param account_id: the account in the receiver's path.
    :param event_delivery: the delivery id.
    :param asset_event_id: the asset event's id.
    """
    session.execute(
        update(DELIVERIES)
        .where(DELIVERIES.c.account_id == account_id, DELIVERIES.c.event_delivery == event_delivery)
        .values(asset_event_id=asset_event_id)
    )


def _cleanup(session: Any, cutoff: datetime) -> None:
    """Delete rows older than ``cutoff``, at most once every :data:`CLEANUP_EVERY` seconds."""
    global _last_cleanup
    if time.monotonic() - _last_cleanup < CLEANUP_EVERY:
        return
    _last_cleanup = time.monotonic()
    session.execute(delete(DELIVERIES).where(DELIVERIES.c.received_at < cutoff))
