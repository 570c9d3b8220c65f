"""
Our contract of the Dintero API (``dintero.yaml`` beside this file) and a validator for requests
and responses against it.

The validator is plain Python on purpose: it reads the YAML shipped in this directory and nothing
outside the repository, so the contract tests run the same on a fresh clone.

A request record is a mapping with ``method``, ``path``, ``host`` (optional), ``query`` (a list of
``(name, value)`` pairs, or a ``{name: [values]}`` dict) and ``body`` (optional: the parsed JSON
body; absent when the log does not keep bodies). :meth:`Contract.check_request` returns the list of
problems found, each naming the operation; an empty list means the request conforms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

CONTRACT_FILE = Path(__file__).with_name("dintero.yaml")

#: stands for a field or body that is not there
_ABSENT = object()
#: what the emulator's request log shows instead of a secret (any type is accepted in its place)
REDACTED = "<redacted>"

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$")
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


@dataclass(frozen=True)
class Operation:
    """One operation of the contract, compiled for matching.

    :param name: the operation's key in the contract.
    :param spec: its YAML mapping.
    :param regex: the compiled path template (``None`` for external URLs without an emulator path).
    """

    name: str
    spec: dict[str, Any]
    regex: re.Pattern[str] | None
    params: tuple[str, ...] = field(default=())

    @property
    def method(self) -> str:
        """The HTTP method."""
        return str(self.spec["method"]).upper()

    @property
    def host(self) -> str:
        """``api``, ``checkout`` or ``external``."""
        return str(self.spec["host"])


class Contract:
    """The contract, loaded from YAML, with request and response checks.

    :param data: the parsed YAML (default: ``dintero.yaml`` beside this module).
    """

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        if data is None:
            data = yaml.safe_load(CONTRACT_FILE.read_text(encoding="utf-8"))
        self.data: dict[str, Any] = dict(data)
        self.patterns: dict[str, str] = dict(self.data.get("patterns") or {})
        self.operations: dict[str, Operation] = {
            name: self._compile(name, spec) for name, spec in self.data["operations"].items()
        }

    @classmethod
    def load(cls) -> Contract:
        """The contract shipped in ``tests/contract/dintero.yaml``."""
        return cls()

    # ------------------------------------------------------------------ matching

    def _pattern(self, name_or_regex: str) -> str:
        return self.patterns.get(name_or_regex, name_or_regex)

    def _compile(self, name: str, spec: Mapping[str, Any]) -> Operation:
        template = spec.get("path") or spec.get("emulator_path")
        if not template:
            return Operation(name, dict(spec), None)
        params = tuple(re.findall(r"\{([^}]+)\}", template))
        regex = "^" + re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
        return Operation(name, dict(spec), re.compile(regex), params)

    def match(self, method: str, path: str) -> tuple[Operation | None, dict[str, str]]:
        """The operation a request is for, and its path parameters; ``(None, {})`` if none.

        :param method: HTTP method.
        :param path: URL path without the query string.
        """
        for op in self.operations.values():
            if op.regex is None or op.method != method.upper():
                continue
            found = op.regex.match(path)
            if found:
                return op, found.groupdict()
        return None, {}

    # ------------------------------------------------------------------ requests

    def check_request(self, record: Any, hosts: Mapping[str, str] | None = None) -> list[str]:
        """Problems of one request record against the contract (empty when it conforms).

        :param record: a request record (mapping or object with ``method``, ``path``, ``query``,
            optional ``host`` and ``body``).
        :param hosts: ``{"api": netloc, "checkout": netloc}`` to check which host was called.
        """
        rec = normalize_record(record)
        method, path = rec["method"], rec["path"]
        op, path_values = self.match(method, path)
        if op is None:
            return [f"{method} {path}: unknown operation (not in the contract)"]
        where = f"{op.name} ({method} {path})"
        problems: list[str] = []
        if hosts and op.host in hosts and rec.get("host") and rec["host"] != hosts[op.host]:
            problems.append(f"{where}: sent to host {rec['host']}, the contract says the {op.host} host")
        path_specs = op.spec.get("path_params") or {}
        for name in op.params:
            value = path_values.get(name, "")
            spec = path_specs.get(name)
            if spec is None:
                continue
            if not re.match(self._pattern(spec["pattern"]), value):
                problems.append(f"{where}: path parameter {name}={value!r} does not match {spec['pattern']}")
        problems.extend(self._check_query(op, where, rec["query"]))
        body = rec.get("body", _ABSENT)
        if body is not _ABSENT:
            problems.extend(self._check_body(op, where, body))
        return problems

    def _check_query(self, op: Operation, where: str, pairs: Sequence[tuple[str, str]]) -> list[str]:
        allowed = op.spec.get("query")
        if allowed == "any":
            return []
        allowed = allowed or {}
        problems: list[str] = []
        seen: dict[str, int] = {}
        for name, value in pairs:
            seen[name] = seen.get(name, 0) + 1
            spec = allowed.get(name)
            if spec is None:
                problems.append(f"{where}: unknown query parameter {name!r}")
                continue
            problem = check_query_value(spec, value)
            if problem:
                problems.append(f"{where}: query parameter {name}={value!r}: {problem}")
        for name, count in seen.items():
            spec = allowed.get(name)
            if spec is None:
                continue
            if count > 1 and not spec.get("repeatable"):
                problems.append(f"{where}: query parameter {name!r} sent {count} times, it is not repeatable")
            for other in spec.get("requires") or []:
                if other not in seen:
                    problems.append(f"{where}: query parameter {name!r} needs {other!r} too")
            for other in spec.get("conflicts") or []:
                if other in seen:
                    problems.append(f"{where}: query parameters {name!r} and {other!r} cannot be combined")
        return problems

    def _check_body(self, op: Operation, where: str, body: Any) -> list[str]:
        fields = op.spec.get("body")
        if fields is None:
            if body in (None, b"", "", {}):
                return []
            return [f"{where}: sends a body, the contract has none for this operation"]
        if not isinstance(body, dict):
            return [f"{where}: body is {type(body).__name__}, expected a JSON object"]
        return [f"{where}: body {p}" for p in check_fields(fields, body, self.patterns)]

    # ------------------------------------------------------------------ responses

    def check_response(self, operation: str, body: Any) -> list[str]:
        """Problems of a successful response body against the fields we rely on.

        :param operation: the operation's name.
        :param body: the parsed JSON body (ignored for ``binary`` and ``any`` shapes).
        """
        op = self.operations[operation]
        spec = op.spec.get("response") or {"shape": "any"}
        shape = spec.get("shape", "any")
        where = f"{op.name} response"
        if shape in ("any", "binary"):
            return []
        if shape == "list":
            items = unwrap_list(body, spec.get("envelopes") or ["bare"])
            if items is None:
                kind = f"object with keys {sorted(body)}" if isinstance(body, dict) else type(body).__name__
                return [
                    f"{where}: expected a list ({', '.join(spec.get('envelopes') or ['bare'])}), got {kind}"
                ]
            problems = []
            for index, item in enumerate(items):
                if not isinstance(item, dict):
                    problems.append(f"{where}: item {index} is {type(item).__name__}, expected an object")
                    continue
                problems.extend(
                    f"{where}: item {index} {p}"
                    for p in check_fields(spec["item_fields"], item, self.patterns)
                )
            return problems
        if not isinstance(body, dict):
            return [f"{where}: expected a JSON object, got {type(body).__name__}"]
        if "any_of" in spec:
            attempts = [check_fields(fields, body, self.patterns) for fields in spec["any_of"]]
            if any(not a for a in attempts):
                return []
            return [f"{where}: matches none of its accepted shapes: " + "; ".join(a[0] for a in attempts)]
        return [f"{where}: {p}" for p in check_fields(spec.get("fields") or {}, body, self.patterns)]


# ---------------------------------------------------------------------- helpers


def normalize_record(record: Any) -> dict[str, Any]:
    """A request record as a dict with ``query`` as a list of pairs.

    Takes the emulator's ``RequestRecord`` (query as ``{name: [values]}`` today, or a list of
    ``(name, value)`` pairs), or any mapping with the same keys.

    :param record: the record.
    """
    if not isinstance(record, Mapping):
        record = record._asdict() if hasattr(record, "_asdict") else vars(record)
    query = record.get("query") or []
    if isinstance(query, Mapping):
        pairs = [(str(k), str(v)) for k, values in query.items() for v in values]
    else:
        pairs = [(str(k), str(v)) for k, v in query]
    out: dict[str, Any] = {
        "method": str(record["method"]).upper(),
        "path": str(record["path"]),
        "host": record.get("host"),
        "query": pairs,
    }
    if "body" in record:
        out["body"] = record["body"]
    return out


def check_query_value(spec: Mapping[str, Any], value: str) -> str | None:
    """Why ``value`` does not fit a query parameter's spec, or ``None`` if it fits.

    :param spec: the parameter's contract entry.
    :param value: the value as sent.
    """
    kind = spec.get("type", "string")
    if kind == "integer":
        if not re.fullmatch(r"-?\d+", value):
            return "expected an integer"
        number = int(value)
        if "minimum" in spec and number < spec["minimum"]:
            return f"below the minimum {spec['minimum']}"
        if "maximum" in spec and number > spec["maximum"]:
            return f"above the maximum {spec['maximum']}"
        return None
    if value == "":
        return "empty"
    fmt = spec.get("format")
    if not fmt:
        return None
    accepted = list(spec.get("accept") or [fmt]) if spec.get("format_uncertain") else [fmt]
    if any(_fits_format(value, f) for f in accepted):
        return None
    return f"expected {' or '.join(accepted)} (format {fmt})"


def _fits_format(value: str, fmt: str) -> bool:
    if fmt == "date":
        if not _DATE.match(value):
            return False
        try:
            date.fromisoformat(value)
        except ValueError:
            return False
        return True
    if fmt == "date-time":
        if not _DATE_TIME.match(value):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    raise ValueError(f"the contract uses an unknown format {fmt!r}")


def _values_at(data: Any, path: str) -> list[tuple[str, Any]]:
    """``(where, value)`` for each place ``path`` points to; value is ``_ABSENT`` if missing.

    ``a.b`` walks objects; ``a[].b`` walks every element of the array ``a``. A missing or
    non-container parent yields nothing (the parent's own entry reports it).
    """
    nodes: list[tuple[str, Any]] = [("", data)]
    parts = path.split(".")
    for i, part in enumerate(parts):
        is_array = part.endswith("[]")
        key = part[:-2] if is_array else part
        last = i == len(parts) - 1
        nxt: list[tuple[str, Any]] = []
        for where, node in nodes:
            if not isinstance(node, dict):
                continue
            here = f"{where}.{key}" if where else key
            value = node.get(key, _ABSENT)
            if last and not is_array:
                nxt.append((here, value))
            elif is_array:
                if isinstance(value, list):
                    nxt.extend((f"{here}[{n}]", v) for n, v in enumerate(value))
            elif value is not _ABSENT:
                nxt.append((here, value))
        nodes = nxt
    return nodes


def check_fields(
    fields: Mapping[str, Any], data: Mapping[str, Any], patterns: Mapping[str, str]
) -> list[str]:
    """Problems of ``data`` against field specs (``required``, ``type``, ``enum``, ``pattern``...).

    :param fields: ``{dotted.path: spec}``; ``a[].b`` reaches into every element of array ``a``.
    :param data: the JSON object.
    :param patterns: named patterns of the contract.
    """
    problems: list[str] = []
    for path, spec in fields.items():
        for where, value in _values_at(data, path):
            if value is _ABSENT:
                if spec.get("required"):
                    problems.append(f"misses required field {where!r}")
                continue
            if value is None:
                if spec.get("required"):
                    problems.append(f"field {where!r} is null")
                continue
            if value == REDACTED:
                continue
            kind = spec.get("type")
            if kind and not _is_type(value, kind):
                problems.append(f"field {where!r} is {type(value).__name__}, expected {kind}")
                continue
            if "enum" in spec and value not in spec["enum"]:
                problems.append(f"field {where!r}={value!r} is not one of {spec['enum']}")
            pattern = patterns.get(spec.get("pattern", ""), spec.get("pattern"))
            if pattern and isinstance(value, str) and not re.match(pattern, value):
                problems.append(f"field {where!r}={value!r} does not match {spec['pattern']}")
            if "max_length" in spec and isinstance(value, str) and len(value) > spec["max_length"]:
                problems.append(f"field {where!r} is longer than {spec['max_length']}")
    return problems


def _is_type(value: Any, kind: str) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _JSON_TYPES[kind])


def unwrap_list(body: Any, envelopes: Iterable[str]) -> list[Any] | None:
    """The items of a list response if its wrapping is an accepted envelope, else ``None``.

    :param body: the parsed JSON body.
    :param envelopes: ``bare`` for a JSON array, or the key of an object holding the array.
    """
    for envelope in envelopes:
        if envelope == "bare" and isinstance(body, list):
            return body
        if envelope != "bare" and isinstance(body, dict) and isinstance(body.get(envelope), list):
            return list(body[envelope])
    return None
