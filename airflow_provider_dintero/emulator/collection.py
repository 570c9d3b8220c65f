"""The shared handler of the emulator's collections: create, list, get, replace and delete.

Clients, grants, payment profiles, settlement and insight report configurations and webhook
subscriptions are all the same thing to the emulator: records of one account, kept in
``app.<store>[account][id]`` in creation order, behind five routes of one shape. A resource
module describes what differs (validation, the record built from a body, its public view,
paging, what makes a duplicate) in one :class:`Collection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_dintero.emulator.core import Request, Route, after_cursor, limit_arg, now
from airflow_provider_dintero.emulator.models import ApiError, Response, field_error
from airflow_provider_dintero.emulator.seed import iso

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_dintero.emulator.app import EmulatorApp

Record = dict[str, Any]


def public(record: Record) -> Record:
    """A record without its internal (``_``-prefixed) fields.

    :param record: the stored record.
    """
    return {k: v for k, v in record.items() if not k.startswith("_")}


def list_response(
    app: EmulatorApp, endpoint: str, items: list[Any], extra: dict[str, Any] | None = None
) -> Response:
    """A list answer in the envelope ``settings.list_envelopes`` chooses for ``endpoint``.

    :param app: the emulator.
    :param endpoint: the list's name (a key of ``models.LIST_ENDPOINTS``).
    :param items: the page of items.
    :param extra: cursor fields of the documented envelope (``last_evaluated_key``, ...).
    """
    from airflow_provider_dintero.emulator.models import LIST_ENDPOINTS

    documented = LIST_ENDPOINTS.get(endpoint)  # an endpoint not listed there answers a bare array
    mode = app.settings.list_envelopes.get(endpoint, "documented")
    key = documented if mode == "documented" else None if mode == "array" else mode
    if key is None:
        return Response.json(items)
    return Response.json({key: items, **(extra or {})})


@dataclass(frozen=True)
class Paging:
    """How a collection's list pages (``limit`` + ``starting_after`` = the last item's id).

    :param default: ``limit`` when absent.
    :param maximum: largest ``limit``.
    :param cursor_in_body: the envelope carries ``starting_after`` when more items follow.
    :param setting: the name of a boolean setting that switches paging on (``None`` = always).
    """

    default: int
    maximum: int
    cursor_in_body: bool = False
    setting: str | None = None


@dataclass(frozen=True)
class Collection:
    """One collection of per-account records and its five routes.

    :param endpoint: the list's name in ``settings.list_envelopes``.
    :param label: the record's name in error messages (``"client"``).
    :param path: the collection path; items are at ``{path}/{id}``.
    :param store: attribute of the app holding ``{account: {id: record}}``, or any other name:
        then ``app.collections[store]`` holds them (emptied by every reset).
    :param read_scopes: scopes for list and get.
    :param write_scopes: scopes for create, replace and delete.
    :param validate: checks a create/replace body (raises 400s).
    :param build: the new record from a validated body (assigns its id).
    :param replace: the replaced record from the old one and a validated body (``None``: no PUT).
    :param view: the public form of a record.
    :param id_field: the field holding the record's id.
    :param duplicate_kind: name in ``settings.refuse_duplicates`` (``None``: never a duplicate).
    :param duplicate_key: what two records share when they are duplicates (``None`` = no key).
    :param duplicate_code: ``error.code`` of a refused duplicate.
    :param list_filter: keeps a record in the list answer given the query.
    :param paging: list paging (``None``: everything in one answer).
    :param answer_create: the create response body from the request and the stored record.
    :param on_delete: side effect of a delete (e.g. a client's grants go too).
    :param stamp_delete: the delete answer carries ``deleted_at``.
    :param create_scopes: scopes for create when they differ from ``write_scopes``.
    :param get: whether a ``GET {path}/{id}`` route exists.
    """

    endpoint: str
    label: str
    path: str
    store: str
    read_scopes: tuple[str, ...]
    write_scopes: tuple[str, ...]
    validate: Callable[[Record], None]
    build: Callable[[EmulatorApp, Request, Record], Record]
    replace: Callable[[EmulatorApp, Request, Record, Record], Record] | None = None
    view: Callable[[Record], Record] = public
    id_field: str = "id"
    duplicate_kind: str | None = None
    duplicate_key: Callable[[Record], Any] | None = None
    duplicate_code: str = "DUPLICATE"
    list_filter: Callable[[Request, Record], bool] | None = None
    paging: Paging | None = None
    answer_create: Callable[[EmulatorApp, Request, Record], Record] | None = None
    on_delete: Callable[[EmulatorApp, Record], None] | None = None
    stamp_delete: bool = False
    create_scopes: tuple[str, ...] | None = None
    get: bool = True

    def routes(self) -> list[Route]:
        """The collection's routes."""
        item = f"{self.path}/{{id}}"
        routes = [
            Route("POST", self.path, self.create, self.create_scopes or self.write_scopes),
            Route("GET", self.path, self.list, self.read_scopes),
            Route("DELETE", item, self.delete, self.write_scopes),
        ]
        if self.get:
            routes.append(Route("GET", item, self.read, self.read_scopes))
        if self.replace is not None:
            routes.append(Route("PUT", item, self.put, self.write_scopes))
        return routes

    # --- store access ------------------------------------------------------------------------------
    def records(self, app: EmulatorApp, account: str) -> dict[str, Record]:
        """The account's records by id (created on first use).

        :param app: the emulator.
        :param account: account id.
        """
        stores: dict[str, dict[str, Record]] | None = vars(app).get(self.store)
        if stores is None:  # a collection without its own attribute on the app
            stores = app.collections.setdefault(self.store, {})
        return stores.setdefault(account, {})

    def find(self, app: EmulatorApp, req: Request) -> Record:
        """The record the path names, else 404.

        :param app: the emulator.
        :param req: the request (path parameter ``id``).
        """
        record = self.records(app, req.account).get(req.params["id"])
        if record is None:
            raise ApiError(404, f"{self.label} {req.params['id']} not found")
        return record

    def refuse_duplicate(self, app: EmulatorApp, account: str, record: Record) -> None:
        """Answer ``settings.duplicate_status`` when the account already holds the same record.

        :param app: the emulator.
        :param account: account id.
        :param record: the record about to be stored.
        """
        if self.duplicate_key is None or self.duplicate_kind not in app.settings.refuse_duplicates:
            return
        key = self.duplicate_key(record)
        if key is None:
            return
        for other in self.records(app, account).values():
            if self.duplicate_key(other) == key:
                raise ApiError(
                    app.settings.duplicate_status,
                    f"{self.label} {_describe(key)} already exists",
                    code=self.duplicate_code,
                )

    # --- handlers ----------------------------------------------------------------------------------
    def create(self, app: EmulatorApp, req: Request) -> Response:
        """``POST {path}``: validate, build, refuse duplicates, store; answers the record.

        :param app: the emulator.
        :param req: the request.
        """
        body = req.json_object()
        self.validate(body)
        with app.lock:
            record = self.build(app, req, body)
            self.refuse_duplicate(app, req.account, record)
            self.records(app, req.account)[record[self.id_field]] = record
            answer = self.answer_create(app, req, record) if self.answer_create else self.view(record)
        return Response.json(answer)

    def list(self, app: EmulatorApp, req: Request) -> Response:
        """``GET {path}``: the account's records (filtered, paged) in the configured envelope.

        :param app: the emulator.
        :param req: the request.
        """
        paging = self.paging
        if paging is not None and paging.setting is not None and not getattr(app.settings, paging.setting):
            paging = None
        limit = limit_arg(req, paging.default, paging.maximum) if paging else 0
        with app.lock:
            items = [
                r
                for r in self.records(app, req.account).values()
                if not self.list_filter or self.list_filter(req, r)
            ]
            extra: dict[str, Any] = {}
            if paging is not None:
                items = after_cursor(items, req.arg("starting_after"), lambda r: str(r[self.id_field]))
                more = len(items) > limit
                items = items[:limit]
                if paging.cursor_in_body and more:
                    extra["starting_after"] = items[-1][self.id_field]
            views = [self.view(r) for r in items]
        return list_response(app, self.endpoint, views, extra)

    def read(self, app: EmulatorApp, req: Request) -> Response:
        """``GET {path}/{id}``.

        :param app: the emulator.
        :param req: the request.
        """
        with app.lock:
            return Response.json(self.view(self.find(app, req)))

    def put(self, app: EmulatorApp, req: Request) -> Response:
        """``PUT {path}/{id}``: replace the record from a validated body.

        :param app: the emulator.
        :param req: the request.
        """
        assert self.replace is not None
        body = req.json_object()
        self.validate(body)
        with app.lock:
            old = self.find(app, req)
            if body.get(self.id_field, old[self.id_field]) != old[self.id_field]:
                raise field_error(self.id_field, "does not match the path")
            record = self.replace(app, req, old, body)
            record["updated_at"] = iso(now())
            self.records(app, req.account)[old[self.id_field]] = record
            return Response.json(self.view(record))

    def delete(self, app: EmulatorApp, req: Request) -> Response:
        """``DELETE {path}/{id}``: answers the deleted record.

        :param app: the emulator.
        :param req: the request.
        """
        with app.lock:
            record = self.find(app, req)
            del self.records(app, req.account)[record[self.id_field]]
            if self.on_delete is not None:
                self.on_delete(app, record)
            view = self.view(record)
        if self.stamp_delete:
            view["deleted_at"] = iso(now())
        return Response.json(view)


def _describe(key: Any) -> str:
    if isinstance(key, tuple):
        return " / ".join(repr(part) for part in key)
    return repr(key) if not isinstance(key, str) else key


def replace_fields(record: Record, body: Record, names: tuple[str, ...]) -> Record:
    """``record`` with its writable ``names`` replaced by those in ``body`` (others kept).

    :param record: the stored record.
    :param body: the validated body.
    :param names: the writable fields.
    """
    kept = {k: v for k, v in record.items() if k not in names}
    return {**kept, **{k: body[k] for k in names if k in body}}
