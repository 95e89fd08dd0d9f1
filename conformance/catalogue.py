"""The requirement catalogue: one stable ID per behaviour, with a one-line MUST statement.

Files are `catalogue/<area>-<topic>.yaml` (or `<area>.yaml`); every ID starts with its area,
e.g. `api.ping.get-ok`, and is defined once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import yaml

AREAS = ("api", "isolation", "cgroups", "network")
SOURCES = ("schema", "kernel", "docker-behaviour")
CATALOGUE_DIR = os.path.join(os.path.dirname(__file__), "catalogue")


class CatalogueError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    id: str
    area: str
    statement: str
    source: str
    min_api: str | None = None


def api_tuple(version: str) -> tuple[int, ...]:
    """"1.41" → (1, 41), for ordering API versions."""
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        raise CatalogueError(f"bad API version {version!r}") from None


def load_catalogue(directory: str = CATALOGUE_DIR) -> dict[str, Requirement]:
    out: dict[str, Requirement] = {}
    for fname in sorted(os.listdir(directory)):
        if not fname.endswith(".yaml"):
            continue
        path = os.path.join(directory, fname)
        area = fname[:-5].split("-")[0]
        if area not in AREAS:
            raise CatalogueError(f"{path}: file name must start with an area {AREAS}")
        with open(path) as fh:
            try:
                doc = yaml.safe_load(fh) or {}
            except yaml.YAMLError as exc:
                raise CatalogueError(f"{path}: not valid YAML: {exc}") from None
        for rid, entry in doc.items():
            where = f"{path}: {rid}"
            if not rid.startswith(area + "."):
                raise CatalogueError(f"{where}: requirement IDs in {area}.yaml must start with '{area}.'")
            if rid in out:
                raise CatalogueError(f"{where}: defined twice")
            if not isinstance(entry, dict) or not entry.get("must"):
                raise CatalogueError(f"{where}: needs a 'must' statement")
            if "MUST" not in entry["must"]:
                raise CatalogueError(f"{where}: the statement must say MUST (or MUST NOT)")
            source = entry.get("source")
            if source not in SOURCES:
                raise CatalogueError(f"{where}: source must be one of {SOURCES}, not {source!r}")
            min_api = entry.get("min_api")
            if min_api is not None:
                min_api = str(min_api)
                api_tuple(min_api)
            out[rid] = Requirement(rid, area, entry["must"].strip(), source, min_api)
    return out
