"""Documented deviations of real daemons from the Engine API schema.

A schema violation is forgiven only when the target is the named product, the offending value
is null, and the JSON path matches the pattern exactly: each entry names the field and why.
Everything else is reported. Deviations of behaviour (not schema) are marked on the check itself
with @pytest.mark.deviation(product, reason=...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .schema import Violation


@dataclass(frozen=True)
class SchemaAllowance:
    product: str
    operation_id: str
    path: str  # regex over the violation's JSON path
    reason: str
    value: object = None  # the one value forgiven at that path (None: a null)

    def covers(self, product: str, v: Violation) -> bool:
        if product != self.product or v.operation_id != self.operation_id:
            return False
        if re.fullmatch(self.path, v.path) is None:
            return False
        return v.instance_is_null if self.value is None else v.instance == self.value


_GO_NIL = "Go marshals a nil slice or map as null; the schema does not mark the field x-nullable"

ALLOWANCES: tuple[SchemaAllowance, ...] = (
    SchemaAllowance("docker", "SystemInfo", r"\$\.GenericResources", _GO_NIL),
    SchemaAllowance("docker", "SystemInfo", r"\$\.Warnings", _GO_NIL),
    SchemaAllowance("docker", "SystemInfo", r"\$\.Plugins\.Authorization", _GO_NIL),
    SchemaAllowance("docker", "SystemInfo", r"\$\.Isolation", "dockerd on Linux leaves Isolation empty; the "
                    "schema's enum has no empty value", value=""),
    SchemaAllowance("docker", "SystemDataUsage", r"\$\.BuildCache", _GO_NIL),
    SchemaAllowance("docker", "SystemDataUsage", r"\$\.Images\[\d+\]\.RepoDigests", _GO_NIL),
)


def schema_allowance(product: str) -> Callable[[Violation], bool] | None:
    """A predicate forgiving exactly the documented deviations of this product, or None."""
    entries = [a for a in ALLOWANCES if a.product == product]
    if not entries:
        return None
    return lambda v: any(a.covers(product, v) for a in entries)
