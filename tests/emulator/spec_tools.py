"""Turn response schemas of the saved Dintero specs (OpenAPI 3.0 and Swagger 2.0) into JSON Schema."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

_DROP = {"discriminator", "example", "readOnly", "xml", "externalDocs", "nullable", "deprecated"}


def spec_dir() -> Path | None:
    """Where the spec files are: ``$DINTERO_OPENAPI_DIR`` or ``<repo>/../shared/dintero-openapi``."""
    env = os.environ.get("DINTERO_OPENAPI_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "dintero-openapi"
    return path if path.is_dir() else None


class Spec:
    """A loaded spec with helpers to get a closed or open JSON Schema of an operation's response.

    :param path: the YAML file.
    """

    def __init__(self, path: Path) -> None:
        with path.open(encoding="utf-8") as fh:
            self.doc: dict[str, Any] = yaml.safe_load(fh)
        self.openapi3 = str(self.doc.get("openapi", "")).startswith("3")

    def _ref(self, ref: str) -> Any:
        node: Any = self.doc
        for part in ref.lstrip("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def resolve(self, node: Any, seen: tuple[str, ...] = ()) -> Any:
        """Inline every ``$ref`` and drop OpenAPI-only keywords.

        :param node: a schema fragment.
        :param seen: refs on the current path (cycle guard).
        """
        if isinstance(node, list):
            return [self.resolve(n, seen) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            if ref in seen:
                return {}
            return self.resolve(copy.deepcopy(self._ref(ref)), (*seen, ref))
        return {
            k: self.resolve(v, seen) for k, v in node.items() if k not in _DROP and not k.startswith("x-")
        }

    def response_schema(self, path: str, method: str, status: int | str) -> dict[str, Any]:
        """The resolved JSON schema of a documented response.

        :param path: path as written in the spec (without server prefix).
        :param method: lower-case method.
        :param status: response status.
        """
        op = self.doc["paths"][path][method]
        response = self.resolve(op["responses"][str(status)])
        if self.openapi3:
            return dict(response["content"]["application/json"]["schema"])
        return dict(response["schema"])

    def definition(self, name: str) -> dict[str, Any]:
        """A resolved named schema (``components/schemas`` or ``definitions``).

        :param name: schema name.
        """
        ref = f"#/components/schemas/{name}" if self.openapi3 else f"#/definitions/{name}"
        return dict(self.resolve({"$ref": ref}))


def merge_all_of(schema: Any) -> Any:
    """Flatten ``allOf`` of object schemas into one object schema (properties and required merged).

    :param schema: a resolved schema.
    """
    if isinstance(schema, list):
        return [merge_all_of(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {k: merge_all_of(v) for k, v in schema.items()}
    parts = schema.pop("allOf", None)
    if parts is None:
        return schema
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k not in ("properties", "required")}
    props = dict(schema.get("properties", {}))
    required = list(schema.get("required", []))
    for part in parts:
        props.update(part.get("properties", {}))
        required += [r for r in part.get("required", []) if r not in required]
        if "type" in part:
            merged.setdefault("type", part["type"])
    merged["properties"] = props
    if required:
        merged["required"] = required
    return merged


def closed(schema: Any) -> Any:
    """Forbid properties the spec does not declare, on every object schema with ``properties``.

    :param schema: a schema without ``allOf`` (see :func:`merge_all_of`).
    """
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: closed(v) if k != "properties" else {pk: closed(pv) for pk, pv in v.items()}
        for k, v in schema.items()
    }
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out
