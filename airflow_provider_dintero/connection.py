"""
The Dintero connection: its form and every field read and checked before any request, as a
mixin of the hooks in :mod:`airflow_provider_dintero.hooks.dintero`.

The form is declared once, as data (:data:`~airflow_provider_dintero.get_provider_info.CONNECTION_FIELDS`
and ``UI_FIELD_BEHAVIOUR``). Airflow 3.2+ reads it from the provider info (``conn-fields``);
Airflow 2.11, 3.0 and 3.1 read it from the hook class registered for the connection type, through
``get_connection_form_widgets``/``get_ui_field_behaviour`` defined on that class itself (Airflow
ignores inherited ones), which return :func:`connection_form_widgets` and :func:`ui_field_behaviour`.

Extra fields and defaults: see :data:`airflow_provider_dintero.get_provider_info.CONNECTION_FIELDS`.
Old names of renamed fields are still read: ``token_cache`` (now ``cache_mode``) and
``token_refresh_margin`` (now ``refresh_margin``).
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from airflow_provider_dintero.exceptions import DinteroInputError
from airflow_provider_dintero.get_provider_info import CONNECTION_FIELDS, DEFAULTS, UI_FIELD_BEHAVIOUR
from airflow_provider_dintero.pipeline import Limits
from airflow_provider_dintero.redaction import mask_secret
from airflow_provider_dintero.transport import environment_ca_bundle, parse_proxies
from airflow_provider_dintero.validation import (
    is_partner_account,
    validate_account_id,
    validate_base_url,
    validate_number,
    validate_port,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection

DEFAULT_BASE_URL = "https://api.dintero.com"
DEFAULT_CHECKOUT_BASE_URL = "https://checkout.dintero.com"
#: The most retries a connection may ask for (``extra.max_retries``).
MAX_RETRIES_LIMIT = 20


#: The widget classes Airflow 2.11's providers manager accepts (``allowed_field_classes`` in
#: ``airflow/providers_manager.py``; 3.0 and 3.1 read hooks the same way): one widget of any other
#: class and it drops every widget of the hook, with only a log line.
ACCEPTED_WIDGET_CLASSES = ("StringField", "IntegerField", "BooleanField", "PasswordField")


def _widget_class(schema: dict[str, Any]) -> str:
    """The accepted wtforms class for one field's JSON schema (numbers are typed as text and checked)."""
    kinds = [k for k in (schema.get("type") or ["string"]) if k != "null"]
    kind = kinds[0] if kinds else "string"
    if schema.get("format") == "password":
        return "PasswordField"
    if kind == "integer" and "enum" not in schema:
        return "IntegerField"
    if kind == "boolean":
        return "BooleanField"
    return "StringField"  # string, number, enum, object (JSON text)


#: Fields whose form check is the hook's own validator (the others are checked from their schema).
_FIELD_CHECKS: dict[str, Any] = {
    "account_id": validate_account_id,
    "checkout_base_url": validate_base_url,
    "proxies": parse_proxies,
}


def _form_check(name: str, spec: dict[str, Any]) -> Any:
    """
    A wtforms validator that applies the hook's own check of one extra field, so the form refuses
    on save what the hook would refuse at parse time, with the same message naming the field.
    """
    from wtforms.validators import ValidationError

    schema, field = spec["schema"], f"extra.{name}"
    kinds = set(schema.get("type") or ["string"]) - {"null"}

    def check(form: Any, widget: Any) -> None:
        value = widget.data
        if value is None or (isinstance(value, str) and not value.strip()):
            return
        try:
            if "enum" in schema:
                if str(value).strip().lower() not in {str(v) for v in schema["enum"] if v is not None}:
                    allowed = " or ".join(repr(v) for v in schema["enum"] if v is not None)
                    raise DinteroInputError(field, allowed, value)
            elif kinds & {"number", "integer"}:
                low = schema.get("exclusiveMinimum", schema.get("minimum", float("-inf")))
                number = validate_number(
                    value,
                    field,
                    minimum=low,
                    maximum=schema.get("maximum", float("inf")),
                    exclusive_minimum="exclusiveMinimum" in schema,
                )
                if "integer" in kinds and number != int(number):
                    raise DinteroInputError(field, "a whole number", value)
            elif "object" in kinds:
                parsed = json.loads(value) if isinstance(value, str) else value
                if not isinstance(parsed, dict):
                    raise DinteroInputError(field, "a JSON object", value)
            elif name in _FIELD_CHECKS:
                _FIELD_CHECKS[name](str(value).strip(), field)
            elif "pattern" in schema and not re.fullmatch(schema["pattern"], str(value).strip()):
                raise DinteroInputError(field, spec["description"], value)
        except json.JSONDecodeError:
            raise ValidationError(str(DinteroInputError(field, "a JSON object", value))) from None
        except DinteroInputError as err:
            raise ValidationError(str(err)) from None

    return check


def connection_form_widgets() -> dict[str, Any]:
    """
    The extra fields of the connection form as wtforms widgets, one per entry of
    :data:`~airflow_provider_dintero.get_provider_info.CONNECTION_FIELDS` (read by Airflow 2.11's
    web server, and by 3.0 and 3.1, which do not read ``conn-fields``).

    Only :data:`ACCEPTED_WIDGET_CLASSES` are used; empty inputs show the default as their
    placeholder (:func:`ui_field_behaviour`) and are saved empty, so the hook's default applies;
    every value is checked on save as the hook checks it.
    """
    import wtforms
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms.validators import Optional

    widgets: dict[str, Any] = {}
    for name, spec in CONNECTION_FIELDS.items():
        kind = _widget_class(spec["schema"])
        field_class = getattr(wtforms, kind)
        options: dict[str, Any] = {
            "description": spec["description"],
            "validators": [Optional(), _form_check(name, spec)],
        }
        if kind in ("StringField", "IntegerField"):
            options["widget"] = BS3TextFieldWidget()
        elif kind == "PasswordField":
            options["widget"] = BS3PasswordFieldWidget()
        widgets[name] = field_class(lazy_gettext(spec["label"]), **options)
    return widgets


def ui_field_behaviour() -> dict[str, Any]:
    """How the standard connection fields are shown: hidden, relabelled, placeholders (Airflow 2.11-3.1)."""
    return {
        "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
        "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
        "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
    }


class DinteroConnectionMixin:
    """
    Reads and checks the fields of a ``dintero`` connection; each error names the field.

    The host class provides ``dintero_conn_id`` and ``get_connection`` (Airflow's ``BaseHook``).
    """

    dintero_conn_id: str

    if TYPE_CHECKING:

        @classmethod
        def get_connection(cls, conn_id: str) -> Connection: ...

    # ---------------------------------------------------------------- configuration

    @cached_property
    def connection(self) -> Connection:
        """The Airflow connection, read once per hook."""
        return self.get_connection(self.dintero_conn_id)

    @cached_property
    def _extra(self) -> dict[str, Any]:
        extra = self.connection.extra_dejson
        return extra if isinstance(extra, dict) else {}

    def _extra_value(self, key: str, *old_keys: str) -> tuple[str, Any]:
        """The extra field's name as given (new key first, then an old one) and its value."""
        for name in (key, *old_keys):
            if self._extra.get(name) not in (None, ""):
                return f"extra.{name}", self._extra[name]
        return f"extra.{key}", DEFAULTS.get(key)

    def _number(
        self, key: str, *old: str, minimum: float, maximum: float = float("inf"), above: bool = False
    ) -> float:
        field, raw = self._extra_value(key, *old)
        return validate_number(raw, field, minimum=minimum, maximum=maximum, exclusive_minimum=above)

    @cached_property
    def account_id(self) -> str:
        """The connection's own account id (``extra.account_id``)."""
        return validate_account_id(self._extra.get("account_id"), "extra.account_id")

    @cached_property
    def client_id(self) -> str:
        """The API client id (the connection's login)."""
        login = self.connection.login
        if not login or not str(login).strip():
            raise DinteroInputError("login", "the Dintero API client id (Client ID)")
        return str(login).strip()

    @property
    def _client_secret(self) -> str:
        secret = self.connection.password
        if not secret:
            raise DinteroInputError("password", "the Dintero API client secret (Client secret)")
        mask_secret(secret)
        return str(secret)

    @cached_property
    def base_url(self) -> str:
        """The API base URL, e.g. ``https://api.dintero.com`` (no trailing slash)."""
        conn = self.connection
        host = (conn.host or "").strip()
        port = validate_port(conn.port, "port")
        if not host:
            return DEFAULT_BASE_URL
        if "://" not in host:
            scheme = str(self._extra.get("scheme") or "https")
            host = f"{scheme}://{host}{f':{port}' if port else ''}"
        elif port and "@" not in host and urlsplit(host).port is None:
            host = f"{host.rstrip('/')}:{port}"
        return validate_base_url(host, "host")

    @cached_property
    def checkout_base_url(self) -> str:
        """The checkout API base URL (payment profiles), default ``https://checkout.dintero.com``."""
        raw = self._extra.get("checkout_base_url") or DEFAULT_CHECKOUT_BASE_URL
        return validate_base_url(raw, "extra.checkout_base_url")

    @cached_property
    def timeout(self) -> float:
        """Seconds to wait for a connection or a read, per request (finite, > 0)."""
        return self._number("timeout", minimum=0, maximum=3600, above=True)

    @cached_property
    def max_retries(self) -> int:
        """How many times a request is retried on 429, 5xx or a connection error (0 to 20)."""
        field, raw = self._extra_value("max_retries")
        value = validate_number(raw, field, minimum=0, maximum=MAX_RETRIES_LIMIT)
        if value != int(value):
            raise DinteroInputError(field, f"a whole number from 0 to {MAX_RETRIES_LIMIT}", raw)
        return int(value)

    @cached_property
    def retry_backoff(self) -> float:
        """First back-off in seconds; doubles on each retry, with jitter."""
        return self._number("retry_backoff", minimum=0, maximum=3600)

    @cached_property
    def retry_max_wait(self) -> float:
        """The longest single wait between retries, including a server's ``Retry-After``."""
        return self._number("retry_max_wait", minimum=0, maximum=3600)

    @cached_property
    def request_deadline(self) -> float:
        """
        Total seconds one API request may take, retries included. The default lets every attempt
        use its own deadline (twice the timeout) and every wait between them.
        """
        if self._extra.get("request_deadline") in (None, ""):
            return (self.max_retries + 1) * 2 * self.timeout + self.max_retries * self.retry_max_wait
        return self._number("request_deadline", minimum=0, maximum=86400, above=True)

    @cached_property
    def token_refresh_margin(self) -> float:
        """Seconds before expiry at which a cached token is replaced (``extra.refresh_margin``)."""
        return self._number("refresh_margin", "token_refresh_margin", minimum=0, maximum=86400)

    @cached_property
    def token_cache_mode(self) -> Literal["memory", "variable"]:
        """``memory`` (per process) or ``variable`` (shared via an Airflow Variable): ``extra.cache_mode``."""
        field, raw = self._extra_value("cache_mode", "token_cache")
        mode = str(raw or "memory").lower()
        if mode not in ("memory", "variable"):
            raise DinteroInputError(field, "'memory' or 'variable'", raw)
        return "variable" if mode == "variable" else "memory"

    @cached_property
    def token_lease_settle(self) -> float:
        """
        Seconds a process waits after writing a token lease before reading it back, with
        ``cache_mode: variable`` (``extra.cache_lease_settle``, default 1): it must exceed the
        longest time a Variable write takes to land (see :class:`~.auth.SharedTokenStore`).
        """
        return self._number("cache_lease_settle", minimum=0, maximum=60)

    @cached_property
    def token_lease_ttl(self) -> float:
        """
        Seconds a token lease holds, with ``cache_mode: variable`` (``extra.cache_lease_ttl``,
        default 60): how long the others wait for a worker that died while minting.
        """
        return self._number("cache_lease_ttl", minimum=0, maximum=3600, above=True)

    @cached_property
    def limits(self) -> Limits:
        """Every bound of a request, from the connection (see :class:`~.pipeline.Limits`)."""
        return Limits(
            timeout=self.timeout,
            max_retries=self.max_retries,
            retry_backoff=self.retry_backoff,
            retry_max_wait=self.retry_max_wait,
            deadline=self.request_deadline,
            max_body=int(self._number("max_response_bytes", minimum=1024, maximum=2**31)),
            max_pages=int(self._number("max_pages", minimum=1, maximum=10**7)),
        )

    @cached_property
    def min_download_rate(self) -> float:
        """The slowest acceptable download, in bytes per second, once ``timeout`` seconds have passed."""
        return self._number("min_download_rate", minimum=0, maximum=2**40)

    @cached_property
    def verify(self) -> bool | str:
        """
        TLS verification: ``extra.verify`` (true, false or a CA bundle path); when it is not set,
        on, with the CA bundle ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or ``SSL_CERT_FILE``
        names, else certifi's (the same for both hooks).
        """
        raw = self._extra.get("verify")
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            raw = raw.strip().lower() == "true"
        if raw is False:
            return False
        if isinstance(raw, str) and raw.strip():
            return raw.strip()
        return environment_ca_bundle() or True

    @cached_property
    def proxies(self) -> dict[str, str]:
        """
        The connection's proxies (``extra.proxies``, as the http provider reads them): proxy URL
        per scheme, e.g. ``{"https": "http://proxy.example:3128"}``; ``{}`` leaves the choice to
        ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``, which apply to both hooks either way.
        """
        return parse_proxies(self._extra.get("proxies"), "extra.proxies")

    def validate_connection(self) -> None:
        """Check every connection field before any request; raise :class:`DinteroInputError`."""
        _ = (self.account_id, self.client_id, self._client_secret, self.base_url, self.checkout_base_url)
        _ = (self.limits, self.token_cache_mode, self.token_refresh_margin, self.min_download_rate)
        _ = (self.token_lease_settle, self.token_lease_ttl)
        _ = self.proxies

    @cached_property
    def _connection_checked(self) -> bool:
        """Every connection field checked once, before this hook's first request."""
        self.validate_connection()
        return True

    @property
    def is_partner(self) -> bool:
        """Whether the connection's account is a partner account."""
        return is_partner_account(self.account_id)

    def resolve_account_id(self, account_id: str | None, field: str = "account_id") -> str:
        """
        Return the account a call acts on, checking that this connection can reach it.

        :param account_id: a merchant or the connection's own account; ``None`` for the latter.
        :param field: the parameter name for error messages.
        """
        own = self.account_id
        if account_id is None:
            return own
        account_id = validate_account_id(account_id, field)
        if account_id != own and not is_partner_account(own):
            raise DinteroInputError(
                field,
                f"the connection's own account {own}: a merchant connection cannot act on other "
                "accounts (use a partner connection, whose account id ends in 00000)",
                account_id,
            )
        return account_id
