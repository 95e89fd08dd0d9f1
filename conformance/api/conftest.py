"""The api area's fixtures: requests sent ahead for checks whose answer some daemons take long to give."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..client import ApiClient
from ..early import EarlyRequest, EarlyRequests
from ..resources import RUN_LABEL, Names


@pytest.fixture(scope="session", autouse=True)
def early(request: pytest.FixtureRequest, _session_api: ApiClient, names: Names,
          run_id: str) -> Iterator[EarlyRequests]:
    """Sent when the area starts on this worker, if their check is selected: dockerd answers that a
    driver is unknown only after ~15 s of looking for a plugin, so the checks find the answers ready.
    Under xdist every worker sends them (none knows which gets the check): a second failing request is
    the cost. Whatever a daemon wrongly created is removed at the end."""
    ahead = EarlyRequests(_session_api)
    selected = {item.nodeid.split("[")[0].split("conformance/", 1)[-1] for item in request.session.items}
    driver = f"no-such-driver-{run_id}"
    ahead.define("volume-unknown-driver", EarlyRequest(
        "POST", "/volumes/create", {"Name": names("nodrv"), "Driver": driver, "Labels": {RUN_LABEL: run_id}},
        undo=lambda api, resp: api.delete(f"/volumes/{resp.json()['Name']}", params={"force": 1})),
        "api/test_volumes.py::test_create_unknown_driver" in selected)
    ahead.define("network-unknown-driver", EarlyRequest(
        "POST", "/networks/create",
        {"Name": names("nodrv"), "CheckDuplicate": True, "Driver": driver, "Labels": {RUN_LABEL: run_id}},
        undo=lambda api, resp: api.delete(f"/networks/{resp.json()['Id']}")),
        "api/test_networks.py::test_create_unknown_driver" in selected)
    yield ahead
    ahead.close(_session_api)
