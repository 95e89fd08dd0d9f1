"""The end-of-run leak check finds what a check left behind, and removes it."""

from __future__ import annotations

import uuid

from conformance.client import ApiClient
from conformance.plugin import remove_run_objects, volume_names
from conformance.probe_image import build_probe_tar
from conformance.resources import RUN_LABEL
from conformance.target import parse_target


def test_leftovers_are_reported_and_removed(dockerd_socket: str) -> None:
    target = parse_target(f"unix://{dockerd_socket}")
    run_id = "leak" + uuid.uuid4().hex[:6]
    api = ApiClient(target)
    try:
        names, data = build_probe_tar(run_id)
        assert api.post("/images/load", data=data, params={"quiet": 1}).status_code == 200
        labels = {RUN_LABEL: run_id}
        cid = api.post("/containers/create", {"Image": names.base, "Cmd": ["true"], "Labels": labels}).json()["Id"]
        vol = api.post("/volumes/create", {"Name": f"conf-{run_id}-vol", "Labels": labels}).json()["Name"]
        leaks = remove_run_objects(target, run_id)
        assert any(cid[:12] in x for x in leaks), leaks
        assert any(vol in x for x in leaks), leaks
        assert not any("probe" in x for x in leaks), "the probe images are expected, not leaks"
        assert remove_run_objects(target, run_id) == [], "a second pass must find nothing left"
        assert api.get(f"/containers/{cid}/json").status_code == 404
        assert api.get(f"/images/{names.base}/json").status_code == 404
    finally:
        remove_run_objects(target, run_id)
        api.close()


def test_unlabelled_volumes_are_seen_not_removed(dockerd_socket: str) -> None:
    """An anonymous volume a check leaves has no run label: the run reports it and leaves it alone."""
    target = parse_target(f"unix://{dockerd_socket}")
    api = ApiClient(target)
    before = volume_names(target)
    assert before is not None, "GET /volumes failed on dockerd"
    name = "conf-stray-" + uuid.uuid4().hex[:8]
    try:
        assert api.post("/volumes/create", {"Name": name}).status_code == 201
        after = volume_names(target)
        assert after is not None and name in after - before, f"{name} not seen among {sorted(after or [])}"
        assert remove_run_objects(target, "stray" + name[-6:]) == [], "an unlabelled volume is not a run's leak"
        assert api.get(f"/volumes/{name}").status_code == 200, "the leak check removed a volume it cannot own"
    finally:
        api.delete(f"/volumes/{name}")
        api.close()
