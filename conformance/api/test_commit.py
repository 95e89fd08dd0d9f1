"""POST /commit (docker commit): a container's filesystem changes and config as a new image.

The container writes a file and deletes one of its image's; the committed image must carry both
(the deletion as a whiteout), one layer more than its parent, and the run config the request asks
for: the container's own, with `changes` (Dockerfile instructions) on top.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import pytest

from conformance.client import ApiClient, error_message, json_lines
from conformance.resources import Containers, Images, Names

WRITE = "echo committed > /committed.txt && rm /etc/group && echo ready && while true; do sleep 0.1; done"


def _committing(containers: Containers, names: Names) -> tuple[str, str]:
    """A running container that has made its changes; (its ID, the value of its own label)."""
    mark = names("commit")
    cid = containers.run(["sh", "-c", WRITE], Env=["FROM_RUN=1"], WorkingDir="/tmp",
                         Labels={"org.conformance.commit": mark})
    for _ in range(100):
        if "ready" in containers.output(cid):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the container never wrote its changes: {containers.output(cid)!r}")
    return cid, mark


def _commit(api: ApiClient, cid: str, repo: str, tag: str, **params: Any) -> Any:
    query = [("container", cid), ("repo", repo), ("tag", tag)]
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            query.append((key, v))
    return api.post("/commit?" + urllib.parse.urlencode(query))


def _image(api: ApiClient, ref: str) -> dict[str, Any]:
    resp = api.get(f"/images/{ref}/json")
    assert resp.status_code == 200, f"GET /images/{ref}/json after the commit answered {resp.status_code}"
    return resp.json()


@pytest.mark.req("api.images.commit-layer")
def test_commit_makes_an_image_of_the_changes(api: ApiClient, images: Images, containers: Containers,
                                             names: Names) -> None:
    cid, _ = _committing(containers, names)
    repo, tag = images.new_ref("committed")
    resp = _commit(api, cid, repo, tag)
    assert resp.status_code == 201, f"POST /commit answered {resp.status_code} {error_message(resp)!r}; expected 201"
    image_id = resp.json().get("Id", "")
    assert image_id.startswith("sha256:"), f"the commit answered {resp.json()!r}; expected {{'Id': 'sha256:...'}}"
    info = _image(api, f"{repo}:{tag}")
    parent = _image(api, containers.inspect(cid)["Image"])
    assert info["Id"] == image_id, f"{repo}:{tag} is {info['Id']}, the commit answered {image_id}"
    assert len(info["RootFS"]["Layers"]) == len(parent["RootFS"]["Layers"]) + 1, (
        f"the committed image has {len(info['RootFS']['Layers'])} layers over the parent's "
        f"{len(parent['RootFS']['Layers'])}; the container's changes are one more layer")
    state = containers.inspect(cid)["State"]
    assert state["Running"] and not state["Paused"], f"after the commit the container's state is {state}"
    run = containers.run_output(["sh", "-c", "cat /committed.txt; ls /etc/group 2>&1"], image=f"{repo}:{tag}")
    assert run.stdout.startswith("committed\n"), (
        f"a container of the committed image reads {run.stdout!r}: the file the container wrote is missing")
    assert "No such file" in run.stdout, (
        f"/etc/group, deleted in the committed container, is there again in the image: {run.stdout!r}")


@pytest.mark.req("api.images.commit-config")
def test_commit_config_and_changes(api: ApiClient, images: Images, containers: Containers, names: Names) -> None:
    cid, mark = _committing(containers, names)
    repo, tag = images.new_ref("committed")
    resp = _commit(api, cid, repo, tag, comment="a conformance commit", author="conformance <c@example.test>",
                   changes=['CMD ["echo", "from-change"]', "ENV FROM_CHANGE=2"])
    assert resp.status_code == 201, f"POST /commit answered {resp.status_code} {error_message(resp)!r}"
    info = _image(api, f"{repo}:{tag}")
    cfg = info["Config"]
    assert cfg["Cmd"] == ["echo", "from-change"], f"Config.Cmd is {cfg['Cmd']!r}; the CMD change sets it"
    env = cfg.get("Env") or []
    assert "FROM_RUN=1" in env and "FROM_CHANGE=2" in env, (
        f"Config.Env is {env}; expected the container's FROM_RUN=1 and the change's FROM_CHANGE=2")
    assert cfg.get("WorkingDir") == "/tmp", f"Config.WorkingDir is {cfg.get('WorkingDir')!r}; the container's is /tmp"
    assert (cfg.get("Labels") or {}).get("org.conformance.commit") == mark, (
        f"Config.Labels is {cfg.get('Labels')}; the container's labels are kept")
    assert (info["Author"], info["Comment"]) == ("conformance <c@example.test>", "a conformance commit"), (
        f"Author/Comment are {info['Author']!r}/{info['Comment']!r}")
    assert info["ContainerConfig"]["Cmd"] == ["sh", "-c", WRITE], (
        f"ContainerConfig.Cmd is {info['ContainerConfig']['Cmd']!r}; it is the committed container's config")
    hist = api.get(f"/images/{repo}:{tag}/history").json()
    assert hist[0]["Comment"] == "a conformance commit" and hist[0]["Id"] == info["Id"], (
        f"the newest history entry is {hist[0]}; expected the commit with its comment")


@pytest.mark.req("api.images.commit-event")
def test_commit_event(api: ApiClient, images: Images, containers: Containers, names: Names) -> None:
    cid, _ = _committing(containers, names)
    repo, tag = images.new_ref("committed")
    since = time.time() - 5
    resp = _commit(api, cid, repo, tag, comment="evented")
    assert resp.status_code == 201, f"POST /commit answered {resp.status_code} {error_message(resp)!r}"
    image_id = resp.json()["Id"]
    found: list[dict[str, Any]] = []
    for _ in range(50):
        ev = api.get("/events", params={"since": f"{since:.3f}", "until": f"{time.time():.3f}",
                                        "filters": {"container": [cid], "event": ["commit"]}}, timeout=30)
        found = [e for e in json_lines(ev.content) if e.get("Action") == "commit"]
        if found:
            break
        time.sleep(0.1)
    assert found, "no container commit event for the commit"
    attrs = found[0]["Actor"].get("Attributes") or {}
    assert attrs.get("imageID") == image_id and attrs.get("comment") == "evented", (
        f"the commit event's attributes are {attrs}; dockerd names the new imageID and the comment")


@pytest.mark.req("api.images.commit-errors")
@pytest.mark.parametrize("case", ["no-such-container", "invalid-change", "no-container"])
def test_commit_refusals(api: ApiClient, images: Images, containers: Containers, names: Names, case: str) -> None:
    repo, tag = images.new_ref("refused")
    if case == "no-such-container":
        resp, expected = _commit(api, names("missing"), repo, tag), 404
    elif case == "invalid-change":
        cid = containers.create(["true"])
        resp, expected = _commit(api, cid, repo, tag, changes=["RUN echo no"]), 400
    else:
        resp, expected = api.post("/commit", params={"repo": repo, "tag": tag}), 400
    assert resp.status_code == expected, f"POST /commit ({case}) answered {resp.status_code}; expected {expected}"
    assert error_message(resp), f"the {resp.status_code} carries no JSON message: {resp.text[:200]!r}"
    assert api.get(f"/images/{repo}:{tag}/json").status_code == 404, f"a refused commit ({case}) still tagged an image"
