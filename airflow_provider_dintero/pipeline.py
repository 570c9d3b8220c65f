"""
The request pipeline, free of I/O: request building, the retry decision, error mapping, response
parsing and every pagination state machine, written once for the sync and the async hook.

A *flow* is a generator that yields actions (:class:`Send`, :class:`Sleep`, :class:`GetToken`,
:class:`DropToken`, :class:`Blocking`, :class:`Emit`) and receives their results; it returns the
call's value. A driver performs the actions: :func:`iterate` / :func:`run` with a blocking
``requests`` transport, :func:`arun` with an ``httpx`` one (see
:mod:`airflow_provider_dintero.transport`). Both drivers only carry out what the flow decides, so
both paths retry, fail and page alike; tokens are flows too (:mod:`airflow_provider_dintero.auth`).
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import random
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, TypeVar

from airflow_provider_dintero.exceptions import (
    DinteroApiError,
    DinteroAuthError,
    DinteroNotFoundError,
)
from airflow_provider_dintero.redaction import redact_text, redact_url

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
#: Transport failures retried like a 503: nothing usable arrived.
RETRYABLE_FAILURES = frozenset({"connect", "timeout", "truncated"})
FailureKind = Literal["connect", "timeout", "truncated", "too_large", "redirects", "deadline"]
_FAILURE_WORDS: dict[str, str] = {
    "connect": "could not connect",
    "timeout": "timed out",
    "truncated": "broke off before the answer was complete",
    "too_large": "answered more than the JSON size cap (extra.max_response_bytes)",
    "redirects": "redirected too many times (a redirect loop)",
    "deadline": "did not finish within its deadline (2 x timeout per attempt; extra.request_deadline in all)",
}

T = TypeVar("T")


# ------------------------------------------------------------------------------------------
# Requests, outcomes and limits
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """
    The bounds of every request, read from the connection.

    :param timeout: seconds per connect or read.
    :param max_retries: retries on 429, 5xx and connection errors.
    :param retry_backoff: first back-off in seconds (doubles, with jitter).
    :param retry_max_wait: the longest single wait, ``Retry-After`` included.
    :param deadline: total seconds one API request may take, retries included.
    :param max_body: the largest JSON answer read, in bytes.
    :param max_pages: the most pages one listing may take.
    """

    timeout: float = 30.0
    max_retries: int = 5
    retry_backoff: float = 1.0
    retry_max_wait: float = 60.0
    deadline: float = 300.0
    max_body: int = 16 * 1024 * 1024
    max_pages: int = 10_000


@dataclass(frozen=True, kw_only=True)
class Request:
    """
    One API request as the flow describes it (no credential in it: see ``token_account``).

    :param method: HTTP method.
    :param url: the full URL.
    :param operation: what the request does, in words, for errors ("list settlements").
    :param account_id: the account the request is about, for errors.
    :param params: query parameters.
    :param json: JSON body.
    :param token_account: the account whose bearer token to attach; ``None`` for none.
    :param headers: extra headers (a Basic ``Authorization`` for the token request).
    :param stream: keep the body open for a download instead of reading it.
    """

    method: str
    url: str
    operation: str
    account_id: str | None
    params: Sequence[tuple[str, str]] | None = None
    json: Any = None
    token_account: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    stream: bool = False


@dataclass
class Reply:
    """
    An answer as a transport hands it back.

    :param status: HTTP status.
    :param headers: response headers (case-insensitive mapping).
    :param body: the whole body, read within the caps (``None`` for an open download).
    :param raw: the open response of a download (``stream=True``).
    """

    status: int
    headers: Mapping[str, str]
    body: bytes | None = None
    raw: Any = None


@dataclass
class Failure:
    """
    No usable answer: the kind decides whether the flow retries.

    :param kind: connect, timeout, truncated (retried); too_large, redirects, deadline (not).
    :param detail: the exception's class name (never its text: it may quote a URL).
    """

    kind: FailureKind
    detail: str = ""


# ------------------------------------------------------------------------------------------
# Actions
# ------------------------------------------------------------------------------------------


@dataclass
class Send:
    """
    Send ``request`` with ``headers`` and read its answer before ``deadline_at`` (monotonic).

    :param request: the request.
    :param headers: the headers to send (with the bearer token, if any).
    :param deadline_at: ``time.monotonic()`` value after which the transport gives up.
    :param limits: the connection's limits (timeout and body cap).
    """

    request: Request
    headers: dict[str, str] = field(repr=False)
    deadline_at: float
    limits: Limits


@dataclass
class Sleep:
    """
    Wait ``seconds`` before the next attempt; ``reason`` is logged (no credentials).

    :param seconds: how long to wait.
    :param reason: why, in words; logged as a warning before a retry.
    :param retry: whether the wait is a retry after a failure (logged as a warning) or a planned
        pause, such as a token lease's settle delay or poll (logged at debug level only).
    """

    seconds: float
    reason: str = "Dintero request failed"
    retry: bool = True


@dataclass
class GetToken:
    """Get a valid access token for ``account_id`` (see :mod:`~airflow_provider_dintero.auth`)."""

    account_id: str


@dataclass
class DropToken:
    """Forget ``token`` of ``account_id``: Dintero rejected it."""

    account_id: str
    token: str


@dataclass
class Blocking:
    """
    Call ``call`` where blocking is allowed and return its result: directly on the sync path, in
    a worker thread on the async one (an Airflow Variable, the secrets masker).

    :param call: a function of no arguments.
    """

    call: Callable[[], Any] = field(repr=False)


@dataclass
class Emit:
    """Hand ``items`` to the caller of a listing."""

    items: list[Any]


Action = Send | Sleep | GetToken | DropToken | Blocking | Emit
Flow = Generator[Action, Any, T]


# ------------------------------------------------------------------------------------------
# Drivers
# ------------------------------------------------------------------------------------------


class SyncIO(Protocol):
    """What the blocking driver needs: perform one action and return its result."""

    def perform(self, action: Action) -> Any:
        """:param action: any action but :class:`Emit`."""


def _step(flow: Flow[T], reply: Any) -> tuple[bool, Any]:
    """Advance ``flow`` with ``reply``: ``(True, value)`` when it returned, else ``(False, action)``."""
    try:
        return False, flow.send(reply)
    except StopIteration as stop:
        return True, stop.value


def iterate(flow: Flow[T], io: SyncIO) -> Generator[Any, None, T]:
    """
    Drive ``flow`` with blocking I/O, yielding the items it emits; return its value.

    :param flow: a flow generator.
    :param io: performs actions.
    """
    done, action = _step(flow, None)
    while not done:
        if isinstance(action, Emit):
            yield from action.items
            done, action = _step(flow, None)
        else:
            done, action = _step(flow, io.perform(action))
    return action


def run(flow: Flow[T], io: SyncIO) -> T:
    """
    Drive a flow that emits nothing and return its value.

    :param flow: a flow generator.
    :param io: performs actions.
    """
    driver = iterate(flow, io)
    while True:
        try:
            next(driver)
        except StopIteration as stop:
            return stop.value


async def arun(
    flow: Flow[T],
    perform: Callable[[Action], Awaitable[Any]],
    sink: Callable[[list[Any]], None] | None = None,
) -> T:
    """
    Drive ``flow`` with async I/O; emitted items go to ``sink``. Return the flow's value.

    :param flow: a flow generator.
    :param perform: awaits one action and returns its result.
    :param sink: receives each emitted batch of items.
    """
    done, action = _step(flow, None)
    while not done:
        if isinstance(action, Emit):
            (sink or list)(action.items)
            done, action = _step(flow, None)
        else:
            done, action = _step(flow, await perform(action))
    return action


# ------------------------------------------------------------------------------------------
# One request: tokens, retries, errors
# ------------------------------------------------------------------------------------------


def call(request: Request, limits: Limits) -> Flow[Reply]:
    """
    Send one request with its token, bounded retries and a total deadline; return a good reply.

    Retries 429 (honouring ``Retry-After``), 500/502/503/504, connection errors, timeouts and
    truncated answers with exponential back-off, while the deadline allows; re-mints a rejected
    token once on a 401; raises :class:`DinteroApiError` (or a subclass) for anything else.

    :param request: the request.
    :param limits: the connection's limits.
    """
    deadline_at = time.monotonic() + limits.deadline
    attempts = limits.max_retries + 1
    shown = f"{request.method} {redact_url(request.url)}"
    attempt = 0
    reminted = False
    while True:
        attempt += 1
        headers = dict(request.headers)
        token = None
        if request.token_account:
            token = yield GetToken(request.token_account)
            headers["Authorization"] = f"Bearer {token}"
        # an attempt has twice the timeout to deliver its whole answer: a trickle fails, not hangs
        attempt_deadline = min(deadline_at, time.monotonic() + 2 * limits.timeout)
        outcome = yield Send(request, headers, attempt_deadline, limits)
        if isinstance(outcome, Reply) and outcome.status < 400:
            return outcome
        if isinstance(outcome, Reply) and outcome.status == 401 and token and not reminted:
            reminted = True
            attempt -= 1
            yield DropToken(str(request.token_account), token)
            continue
        wait = retry_wait(outcome, attempt, attempts, limits)
        if wait is not None and time.monotonic() + wait < deadline_at:
            if isinstance(outcome, Reply):
                reason = f"Dintero answered {outcome.status} to {shown}"
            else:
                reason = f"Dintero request {shown} {_FAILURE_WORDS[outcome.kind]}"
            yield Sleep(wait, f"{reason} (attempt {attempt} of {attempts})")
            continue
        if isinstance(outcome, Reply):
            raise api_error(outcome, request, attempt)
        raise DinteroApiError(
            f"Could not {request.operation}: {shown} {_FAILURE_WORDS.get(outcome.kind, outcome.kind)} "
            f"after {attempt} attempt(s) ({outcome.detail or outcome.kind})"
            + (f" for account {request.account_id}" if request.account_id else ""),
            account_id=request.account_id,
        )


def retry_wait(outcome: Reply | Failure, attempt: int, attempts: int, limits: Limits) -> float | None:
    """
    Seconds to wait before retrying, or ``None`` when the outcome is final.

    :param outcome: what the last attempt got.
    :param attempt: the attempt just made (1-based).
    :param attempts: attempts allowed in all.
    :param limits: the connection's limits.
    """
    if attempt >= attempts:
        return None
    if isinstance(outcome, Failure):
        return backoff(attempt, limits) if outcome.kind in RETRYABLE_FAILURES else None
    if outcome.status not in RETRYABLE_STATUS:
        return None
    header = outcome.headers.get("Retry-After")
    if header:
        wait = parse_retry_after(header)
        if wait is not None:
            return min(limits.retry_max_wait, wait)
    return backoff(attempt, limits)


def backoff(attempt: int, limits: Limits) -> float:
    """
    Exponential back-off with jitter, capped at ``retry_max_wait``.

    :param attempt: the attempt just made (1-based).
    :param limits: the connection's limits.
    """
    base = limits.retry_backoff * (2 ** (attempt - 1))
    return min(limits.retry_max_wait, base * (0.5 + random.random()))


def parse_retry_after(value: str) -> float | None:
    """
    Parse a ``Retry-After`` header: delta seconds or an HTTP date. ``None`` if unreadable.

    :param value: the header's value.
    """
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²" or other Unicode digits float() refuses
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def api_error(reply: Reply, request: Request, attempts: int) -> DinteroApiError:
    """
    Map an error answer to :class:`DinteroApiError` (401/403: auth, 404: not found), its text
    redacted: an error body that echoes a credential never reaches a log or an exception.

    :param reply: the error answer (its body read).
    :param request: the request that got it.
    :param attempts: how many attempts were made.
    """
    status = reply.status
    code = api_message = None
    errors: list[Any] = []
    body = _loads(reply.body)
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = _short(err.get("code"))
        api_message = _short(err.get("message"))
        raw_errors = err.get("errors")
        errors = raw_errors if isinstance(raw_errors, list) else []
    elif body is _NOT_JSON and reply.body:
        api_message = _short(reply.body.decode("utf-8", "replace"))
    request_id = _short(reply.headers.get("Request-Id") or reply.headers.get("X-Request-Id"))
    details = "; ".join(
        f"{e.get('field') or e.get('path') or e.get('name')}: {e.get('message') or e.get('reason') or e}"
        if isinstance(e, dict)
        else str(e)
        for e in errors[:20]
    )
    parts = [f"Could not {request.operation}: Dintero answered {status}"]
    parts += [f"[{code}]"] if code else []
    parts += [api_message] if api_message else []
    parts += [f"({_short(details, 500)})"] if details else []
    parts += [f"for account {request.account_id}"] if request.account_id else []
    parts += [f"(request id {request_id})"] if request_id else []
    parts += [f"after {attempts} attempts"] if attempts > 1 else []
    if status == 403 and request.operation.startswith("exchange a token"):
        parts.append("- check that the merchant belongs to this partner")
    elif status == 403:
        parts.append("- check that the API client's grant includes the scope this call needs")
    cls: type[DinteroApiError] = DinteroApiError
    if status in (401, 403):
        cls = DinteroAuthError
    elif status == 404:
        cls = DinteroNotFoundError
    return cls(
        redact_text(" ".join(parts)),
        status=status,
        code=code,
        api_message=redact_text(api_message) if api_message else None,
        errors=errors,
        account_id=request.account_id,
        request_id=request_id,
    )


_NOT_JSON: Any = object()


def _loads(body: bytes | None) -> Any:
    if not body:
        return None
    try:
        return jsonlib.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _short(value: Any, limit: int = 200) -> str | None:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else str(value)
    return redact_text(text[:4096])[:limit]  # redact first: a cut token would no longer look like one


def parse_json(reply: Reply, request: Request) -> Any:
    """
    Return the answer's JSON (``None`` for an empty body); HTML or other non-JSON raises
    :class:`DinteroApiError` naming the operation and the account.

    :param reply: a good answer, its body read.
    :param request: the request that got it.
    """
    body = _loads(reply.body)
    if body is _NOT_JSON:
        kind = reply.headers.get("Content-Type") or "no content type"
        raise DinteroApiError(
            f"Could not {request.operation}: Dintero's answer was not JSON ({_short(kind, 60)})"
            + (f" for account {request.account_id}" if request.account_id else ""),
            status=reply.status,
            account_id=request.account_id,
        )
    return body


def call_json(request: Request, limits: Limits) -> Flow[Any]:
    """
    :func:`call`, then :func:`parse_json`.

    :param request: the request.
    :param limits: the connection's limits.
    """
    reply = yield from call(request, limits)
    return parse_json(reply, request)


# ------------------------------------------------------------------------------------------
# Shapes and pagination
# ------------------------------------------------------------------------------------------


def shape_error(request: Request, expected: str, seen: Any) -> DinteroApiError:
    """
    A :class:`DinteroApiError` for an answer of the wrong shape, naming what was seen.

    :param request: the request whose answer it was.
    :param expected: what was expected, in words.
    :param seen: the answer (only its type, or its keys for an object, are named).
    """
    if isinstance(seen, dict):
        what = f"an object with keys {', '.join(sorted(str(k) for k in seen)[:10]) or '(none)'}"
    else:
        what = f"a JSON {type(seen).__name__}" if seen is not None else "nothing"
    return DinteroApiError(
        redact_text(
            f"Could not {request.operation}: Dintero's answer was {what}, expected {expected}"
            + (f" for account {request.account_id}" if request.account_id else "")
        ),
        account_id=request.account_id,
    )


def items_of(body: Any, request: Request, key: str = "items") -> list[dict[str, Any]]:
    """
    The items of a list answer: a bare array, ``{"items": [...]}`` or ``{key: [...]}``.

    Anything else (or items that are not objects) raises :class:`DinteroApiError` naming the
    endpoint and the keys seen; never an empty list for an answer we did not understand.

    :param body: the parsed answer.
    :param request: the request whose answer it was.
    :param key: the endpoint's documented wrapper key, when it has its own (``reports``).
    """
    items = body
    if isinstance(body, dict):
        items = next((body[k] for k in dict.fromkeys((key, "items")) if isinstance(body.get(k), list)), None)
    if not isinstance(items, list):
        raise shape_error(request, f"a list, or an object with a list under {key!r}", body)
    if not all(isinstance(item, dict) for item in items):
        raise shape_error(request, "a list of objects", [type(i).__name__ for i in items])
    return items


def object_of(body: Any, request: Request, *, optional: bool = False) -> dict[str, Any]:
    """
    The answer as a JSON object, else :class:`DinteroApiError` (``{}`` for an empty optional one).

    :param body: the parsed answer.
    :param request: the request whose answer it was.
    :param optional: whether an empty answer is allowed (deletes).
    """
    if body is None and optional:
        return {}
    if not isinstance(body, dict):
        raise shape_error(request, "a JSON object", body)
    return body


class CursorGuard:
    """
    Stops a listing that would never end: on a cursor already seen (a repeat or a cycle) and at
    the page cap, with an error naming the endpoint and the account.

    :param request: the listing's first request.
    :param max_pages: the page cap.
    """

    def __init__(self, request: Request, max_pages: int) -> None:
        self.request = request
        self.max_pages = max_pages
        self.pages = 0
        self.seen: set[Any] = set()

    def page(self) -> None:
        """Count a page; raise at the cap."""
        self.pages += 1
        if self.pages > self.max_pages:
            raise self._error(f"more than {self.max_pages} pages (extra.max_pages)")

    def check(self, cursor: Any) -> None:
        """
        Remember ``cursor``; raise if it was seen before.

        :param cursor: the next page's cursor.
        """
        if cursor in self.seen:
            raise self._error("a page cursor it had already returned (the listing would never end)")
        self.seen.add(cursor)

    def _error(self, what: str) -> DinteroApiError:
        path = redact_url(self.request.url)
        account = f" for account {self.request.account_id}" if self.request.account_id else ""
        return DinteroApiError(
            f"Could not {self.request.operation}: Dintero returned {what} on {path}{account}",
            account_id=self.request.account_id,
        )


def with_params(request: Request, params: Mapping[str, Any]) -> Request:
    """
    ``request`` with its query replaced by ``params`` (everything else, ``stream`` too, kept).

    :param request: a request.
    :param params: the new query, flattened by :func:`query`.
    """
    return replace(request, params=query(params))


def paged_by_starting_after(
    request: Request,
    limits: Limits,
    params: Mapping[str, Any],
    *,
    items_key: str = "items",
    cursor_key: str = "starting_after",
) -> Flow[None]:
    """
    List pages that carry their next cursor as ``starting_after`` in a wrapper object (report
    metadata, settlement report configurations); emit each page's items.

    :param request: the first page's request (its params are replaced by ``params``).
    :param limits: the connection's limits.
    :param params: the query without a cursor.
    :param items_key: the wrapper key of the items.
    :param cursor_key: the answer's key of the next cursor.
    """
    guard = CursorGuard(request, limits.max_pages)
    cursor: str | None = None
    while True:
        guard.page()
        page = with_params(request, {**params, **({"starting_after": cursor} if cursor else {})})
        body = yield from call_json(page, limits)
        items = items_of(body, page, items_key)
        yield Emit(items)
        nxt = body.get(cursor_key) if isinstance(body, dict) else None
        if not items or not nxt:
            return
        cursor = str(nxt)
        guard.check(cursor)


def paged_by_paging_token(
    request: Request,
    limits: Limits,
    params: Mapping[str, Any],
    limit: int,
    *,
    cursor_field: str = "paging_token",
) -> Flow[None]:
    """
    List pages whose last item's ``paging_token`` (or ``cursor_field``) is the next page's
    ``starting_after`` (the partner's merchants; payment profiles by ``profile_id``); a short
    page is the last, and so is a longer one (the server does not page).

    :param request: the first page's request.
    :param limits: the connection's limits.
    :param params: the query without a cursor.
    :param limit: the page size asked for.
    :param cursor_field: the item field whose value on a page's last item is the next cursor.
    """
    guard = CursorGuard(request, limits.max_pages)
    after: str | None = None
    while True:
        guard.page()
        page = with_params(
            request, {**params, "limit": limit, **({"starting_after": after} if after else {})}
        )
        items = items_of((yield from call_json(page, limits)), page)
        yield Emit(items)
        token = items[-1].get(cursor_field) if items else None
        if len(items) != limit or not token:
            return
        after = str(token)
        guard.check(after)


def query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """
    Flatten a query: lists become repeated parameters (``?a=1&a=2``), ``None`` is left out.

    :param params: the query.
    """
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            out.extend((key, str(v)) for v in value)
        elif isinstance(value, bool):
            out.append((key, "true" if value else "false"))
        else:
            out.append((key, str(value)))
    return out


def collect(flow: Flow[Any], io: SyncIO) -> list[Any]:
    """
    Every item a listing flow emits, all pages read.

    :param flow: a listing flow.
    :param io: performs actions.
    """
    return list(iterate(flow, io))
