"""POST /images/prune: unused images go, by the filters dangling, label and until.

Every image here is a commit labelled with the check's own mark, and every prune is filtered on that
mark, so a prune can reach no image but the check's own (not another check's, nor the host's).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from conformance.client import RECORD, ApiClient, daemon_now, error_message
from conformance.resources import RUN_LABEL, Containers, Images, Names

MiB = 1 << 20
MARK = "org.conformance.prune"


class Made:
    """Committed images of one check, labelled with the run and the check's mark: a 1 MiB file of random
    bytes each, so no two share a layer."""

    def __init__(self, api: ApiClient, containers: Containers, images: Images, names: Names) -> None:
        self.api, self.containers, self.images = api, containers, images
        self.mark = names("prune")

    def image(self, tagged: bool, mark: str | None = None) -> tuple[str, str]:
        """(image ID, its reference or "")."""
        cid, code = self.containers.run_to_exit(["sh", "-c", f"head -c {MiB} /dev/urandom > /blob"])
        assert code == 0, f"the container writing the image's file exited {code}"
        query = [("container", cid), ("changes", f"LABEL {RUN_LABEL}={self.containers.run_id} "
                                                 f"{MARK}={mark or self.mark}")]
        ref = ""
        if tagged:
            repo, tag = self.images.new_ref("pruned")
            query += [("repo", repo), ("tag", tag)]
            ref = f"{repo}:{tag}"
        # an empty config body: the container's own (podman 4.3 cannot commit without a body, a commit
        # matter the commit checks report; here it would hide what prune does)
        resp = self.api.post("/commit?" + urllib.parse.urlencode(query), {})
        assert resp.status_code == 201, f"POST /commit answered {resp.status_code} {error_message(resp)!r}"
        image_id = resp.json()["Id"]
        if not tagged:
            self.images.adopt(image_id)  # removed after the check if the prune left it
        return image_id, ref

    def prune(self, **filters: Any) -> Any:
        return self.api.post("/images/prune", params={"filters": {"label": [f"{MARK}={self.mark}"], **filters}})

    def exists(self, ref: str) -> bool:
        return self.api.get(f"/images/{ref}/json", validate=RECORD).status_code == 200  # scene-setting


@pytest.fixture
def made(api: ApiClient, containers: Containers, images: Images, names: Names) -> Made:
    return Made(api, containers, images, names)


def _deleted(report: dict[str, Any], key: str = "Deleted") -> list[str]:
    return [item[key] for item in report.get("ImagesDeleted") or [] if item.get(key)]


@pytest.mark.req("api.images.prune-dangling")
def test_prune_dangling(made: Made) -> None:
    dangling, _ = made.image(tagged=False)
    tagged, ref = made.image(tagged=True)
    other, _ = made.image(tagged=False, mark=made.mark + "-other")
    resp = made.prune()
    assert resp.status_code == 200, f"POST /images/prune answered {resp.status_code} {error_message(resp)!r}"
    report = resp.json()
    assert dangling in _deleted(report), (
        f"prune (dangling only, the default) reported {report.get('ImagesDeleted')}; expected the untagged "
        f"image {dangling} with the filter's label among the Deleted")
    assert not made.exists(dangling), f"the pruned dangling image {dangling} is still there"
    assert made.exists(ref) and made.exists(other), (
        f"prune of dangling images with label {made.mark} removed the tagged image ({made.exists(ref)=}) or an "
        f"untagged one of another label ({made.exists(other)=}); both must stay")
    assert tagged not in _deleted(report)
    assert isinstance(report.get("SpaceReclaimed"), int) and report["SpaceReclaimed"] >= MiB, (
        f"SpaceReclaimed is {report.get('SpaceReclaimed')!r} after removing an image whose own layer holds a "
        f"{MiB}-byte file; expected at least that")


@pytest.mark.req("api.images.prune-all")
def test_prune_all_unused(made: Made) -> None:
    tagged, ref = made.image(tagged=True)
    used, used_ref = made.image(tagged=True)
    made.containers.create(["true"], image=used_ref)
    resp = made.prune(dangling=["false"])
    assert resp.status_code == 200, f"POST /images/prune answered {resp.status_code} {error_message(resp)!r}"
    report = resp.json()
    assert ref in _deleted(report, "Untagged") or f"docker.io/library/{ref}" in _deleted(report, "Untagged"), (
        f"prune with dangling=false reported {report.get('ImagesDeleted')}; expected the tagged unused image "
        f"{ref} untagged and deleted")
    assert tagged in _deleted(report) and not made.exists(tagged), (
        f"the unused tagged image {tagged} was not deleted by prune with dangling=false")
    assert made.exists(used_ref), (
        f"prune deleted {used_ref}, which a container still uses; an image in use must be kept")


@pytest.mark.req("api.images.prune-until")
def test_prune_until(made: Made) -> None:
    dangling, _ = made.image(tagged=False)
    resp = made.prune(until=["978307200"])  # 2001-01-01: every image here is younger
    assert resp.status_code == 200, f"POST /images/prune answered {resp.status_code} {error_message(resp)!r}"
    assert made.exists(dangling), (
        f"prune with until=2001-01-01 deleted the dangling image {dangling} created today "
        f"(reported {resp.json().get('ImagesDeleted')}); only images created before `until` may go")
    resp = made.prune(until=["1h"])  # a duration: created more than an hour ago
    assert resp.status_code == 200 and made.exists(dangling), (
        f"prune with until=1h answered {resp.status_code} and deleted the image made seconds ago "
        f"({not made.exists(dangling)})")
    later = f"{daemon_now(made.api) + 2:.3f}"  # on the daemon's clock: the image is older
    resp = made.prune(until=[later])
    assert resp.status_code == 200 and dangling in _deleted(resp.json()) and not made.exists(dangling), (
        f"prune with until={later} (2 s from now) answered {resp.status_code} {resp.text[:300]!r}; expected the "
        f"dangling image {dangling}, created before it, deleted")


@pytest.mark.req("api.images.prune-bad-filter")
def test_prune_unknown_filter(api: ApiClient) -> None:
    resp = api.post("/images/prune", params={"filters": {"conformance-nonsense": ["1"]}})
    msg = error_message(resp) or ""
    assert resp.status_code == 400 and "conformance-nonsense" in msg, (
        f"prune with an unknown filter answered {resp.status_code} {msg!r}; dockerd answers 400 naming it")
