"""Validate daemon responses against the official Engine API swagger (Swagger 2.0).

The swagger is read from the system (Debian's golang-github-docker-docker-dev), never copied
into this repository. Swagger 2.0 has no `nullable`; Docker marks nullable fields with the
vendor extension `x-nullable: true`. We turn exactly those into "this schema or null", so a
null anywhere else is reported as the schema violation it is.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import Any

import jsonschema
import yaml

SWAGGER_CANDIDATES = (
    "/usr/share/gocode/src/github.com/docker/docker/api/swagger.yaml",
    "/usr/share/gocode/src/github.com/moby/moby/api/swagger.yaml",
)


class SchemaNotFound(FileNotFoundError):
    pass


def find_swagger(explicit: str | None = None) -> str:
    """The swagger file: an explicit path, $CONFORMANCE_SWAGGER, or the Debian package's path."""
    for path in (explicit, os.environ.get("CONFORMANCE_SWAGGER"), *SWAGGER_CANDIDATES):
        if path and os.path.isfile(path):
            return path
    raise SchemaNotFound(
        "Engine API swagger.yaml not found; install it with `apt-get install golang-github-docker-docker-dev` "
        "or pass --swagger PATH")


def convert(node: Any) -> Any:
    """Swagger 2.0 schema → JSON Schema draft 4, honouring x-nullable and nothing looser."""
    if isinstance(node, list):
        return [convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "definitions", "patternProperties"):
            out[key] = {name: convert(sub) for name, sub in value.items()}
        elif key == "type" and value == "file":
            continue  # a binary body: nothing to check as JSON
        elif key in ("x-nullable", "example", "description", "x-go-name", "x-omitempty"):
            continue
        else:
            out[key] = convert(value)
    if node.get("x-nullable") is True:
        return {"anyOf": [{"type": "null"}, out]}
    return out


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    template: str
    regex: re.Pattern[str]
    literal_weight: int
    responses: dict[str, Any]


@dataclass(frozen=True)
class Violation:
    """One place where a response body disagrees with the schema."""

    operation_id: str
    status: int
    path: str  # JSON path like $.Containers[0].Labels
    message: str
    instance_is_null: bool
    instance: Any = None

    def __str__(self) -> str:
        return f"{self.operation_id} {self.status}: at {self.path}: {self.message}"


def _json_path(error: jsonschema.ValidationError) -> str:
    out = "$"
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def apply_errata(doc: dict[str, Any]) -> None:
    """Mistakes of the swagger file itself, corrected where they are unambiguous (each says why).

    - v1.41 defines `ContainerSummary` as the *array* that GET /containers/json returns, and
      /system/df's `Containers` as an array of `ContainerSummary`, i.e. an array of arrays; every
      daemon sends an array of objects there (later API versions define ContainerSummary as the object).
    """
    summary = doc.get("definitions", {}).get("ContainerSummary", {})
    try:
        responses = doc["paths"]["/system/df"]["get"]["responses"]
        containers = (responses.get(200) or responses.get("200"))["schema"]["properties"]["Containers"]
    except (KeyError, TypeError):
        return
    if summary.get("type") == "array" and containers.get("items", {}).get("$ref") == "#/definitions/ContainerSummary":
        containers["items"] = summary["items"]


class EngineSchema:
    """The Engine API swagger, indexed by method and path, with cached validators."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as fh:
            doc = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        self.path = path
        apply_errata(doc)
        self.version: str = str(doc["info"]["version"])
        self.definitions = {name: convert(d) for name, d in doc.get("definitions", {}).items()}
        self.operations: list[Operation] = []
        for template, item in doc["paths"].items():
            for method, op in item.items():
                if method.lower() not in ("get", "post", "put", "delete", "head", "patch"):
                    continue
                pattern = re.sub(r"\{(\w+)\}", lambda m: "(.+)" if m.group(1) == "name" else "([^/]+)", template)
                self.operations.append(Operation(
                    operation_id=op["operationId"], method=method.upper(), template=template,
                    regex=re.compile("^" + pattern + "$"),
                    literal_weight=len(re.sub(r"\{\w+\}", "", template)),
                    responses={str(k): v for k, v in (op.get("responses") or {}).items()}))
        self._validators: dict[tuple[str, str], jsonschema.Draft4Validator | None] = {}
        self._lock = threading.Lock()

    @property
    def operation_ids(self) -> list[str]:
        return sorted({op.operation_id for op in self.operations})

    def match(self, method: str, path: str) -> Operation | None:
        """The operation for an unversioned API path, preferring the most literal template."""
        path = path.split("?", 1)[0]
        best: Operation | None = None
        for op in self.operations:
            if op.method == method.upper() and op.regex.match(path):
                if best is None or op.literal_weight > best.literal_weight:
                    best = op
        return best

    def _validator(self, op: Operation, status: int) -> jsonschema.Draft4Validator | None:
        key = str(status) if str(status) in op.responses else "default"
        cache_key = (op.operation_id, key)
        with self._lock:
            if cache_key not in self._validators:
                response = op.responses.get(key) or {}
                schema = response.get("schema")
                if schema is None:
                    self._validators[cache_key] = None
                else:
                    root = dict(convert(schema))
                    root["definitions"] = self.definitions
                    self._validators[cache_key] = jsonschema.Draft4Validator(root)
            return self._validators[cache_key]

    def has_schema(self, op: Operation, status: int) -> bool:
        return self._validator(op, status) is not None

    def validate(self, op: Operation, status: int, body: Any) -> list[Violation]:
        """Every violation of the response schema for this status (empty list: valid or no schema)."""
        validator = self._validator(op, status)
        if validator is None:
            return []
        out = []
        for err in validator.iter_errors(body):
            # anyOf errors (x-nullable wrappers) hide the real reason; show the non-null branch's.
            leaf = err
            if err.validator == "anyOf" and err.context:
                non_null = [c for c in err.context if c.validator != "type" or c.validator_value != "null"]
                leaf = min(non_null or err.context, key=lambda c: len(c.absolute_path))
            out.append(Violation(op.operation_id, status, _json_path(leaf), leaf.message,
                                 instance_is_null=leaf.instance is None,
                                 instance=leaf.instance if not isinstance(leaf.instance, (dict, list)) else None))
        return out
