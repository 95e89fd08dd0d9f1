"""Documented deviations of real daemons from the Engine API schema, read from deviations/*.yaml.

A schema violation is forgiven only when the target is the named product, the JSON path matches
the entry's pattern in full, and the value there is the entry's value (null unless it says
otherwise): each entry names exactly one field and why. Every other violation is reported.
Deviations of behaviour (not of the schema) are marked on the check itself with
@pytest.mark.deviation(product, reason=...).

Entry format (a YAML list):
  - product: docker
    operation: SystemInfo          # swagger operationId
    path: '\\$\\.Warnings'           # regex over the JSON path of the violation
    value: null                    # optional; the one value forgiven (default null)
    reason: why the daemon does this
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import yaml

from ..schema import Violation

DEVIATIONS_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class SchemaAllowance:
    product: str
    operation_id: str
    path: str
    reason: str
    value: object = None

    def covers(self, product: str, v: Violation) -> bool:
        if product != self.product or v.operation_id != self.operation_id:
            return False
        if re.fullmatch(self.path, v.path) is None:
            return False
        return v.instance_is_null if self.value is None else v.instance == self.value


@cache
def load_allowances(directory: str = DEVIATIONS_DIR) -> tuple[SchemaAllowance, ...]:
    out = []
    for fname in sorted(os.listdir(directory)):
        if not fname.endswith(".yaml"):
            continue
        path = os.path.join(directory, fname)
        with open(path) as fh:
            entries = yaml.safe_load(fh) or []
        for i, e in enumerate(entries):
            missing = {"product", "operation", "path", "reason"} - set(e)
            if missing:
                raise ValueError(f"{path} entry {i}: missing {sorted(missing)}")
            re.compile(e["path"])
            out.append(SchemaAllowance(e["product"], e["operation"], e["path"], e["reason"], e.get("value")))
    return tuple(out)


def schema_allowance(product: str) -> Callable[[Violation], bool] | None:
    """A predicate forgiving exactly the documented deviations of this product, or None."""
    entries = [a for a in load_allowances() if a.product == product]
    if not entries:
        return None
    return lambda v: any(a.covers(product, v) for a in entries)
