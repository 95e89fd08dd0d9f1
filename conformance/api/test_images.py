"""Images: load, list with filters, inspect, tag, history, remove, save (swagger: Image tag).

Nothing is pulled: the probe images are loaded once per run, and checks that change or remove an
image load their own small image (busybox layer + a config labelled with its unique name).
"""

from __future__ import annotations

import functools
import io
import json
import re
import tarfile
from typing import Any

import pytest

from conformance.client import ApiClient, error_message, json_lines
from conformance.probe_image import PATH_ENV, ImageSpec, ProbeImages, busybox_layer, find_busybox, save_tar
from conformance.resources import Containers, Images, Names

IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
TAR = {"Content-Type": "application/x-tar"}
OWN_LABEL = "org.conformance.image"
PROBE_CREATED = 1700000000  # the probe images' config "created" (probe_image.CREATED)


@functools.cache
def _base_layer() -> bytes:
    return busybox_layer(find_busybox())


def _spec(ref: str, extra_files: dict[str, str] | None = None) -> ImageSpec:
    # The label makes the config, hence the image ID, unique to this ref: removing it touches no one else.
    return ImageSpec(ref, {"Env": [PATH_ENV], "Cmd": ["sh"], "Labels": {OWN_LABEL: ref}}, extra_layer=extra_files or {})


def _load(api: ApiClient, data: bytes, quiet: bool = False) -> Any:
    return api.post("/images/load", data=data, headers=TAR, params={"quiet": 1} if quiet else None, timeout=120)


def _own_image(api: ApiClient, images: Images, what: str = "img") -> tuple[str, str]:
    """Load a fresh single-layer image under a new ref; returns (ref, image ID)."""
    repo, tag = images.new_ref(what)
    ref = f"{repo}:{tag}"
    resp = _load(api, save_tar([_spec(ref)], _base_layer()), quiet=True)
    assert resp.status_code == 200 and f"Loaded image: {ref}" in resp.text, (
        f"loading {ref} answered {resp.status_code} {resp.text[:300]!r}")
    return ref, _inspect(api, ref)["Id"]


def _inspect(api: ApiClient, name: str) -> dict[str, Any]:
    resp = api.get(f"/images/{name}/json")
    assert resp.status_code == 200, f"GET /images/{name}/json answered {resp.status_code}: {resp.text[:200]}"
    return resp.json()


def _list(api: ApiClient, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    resp = api.get("/images/json", params={"filters": filters} if filters else None, timeout=120)
    assert resp.status_code == 200, f"GET /images/json filters={filters} answered {resp.status_code}"
    return resp.json()


def _tags(entries: list[dict[str, Any]]) -> set[str]:
    return {t for e in entries for t in e.get("RepoTags") or []}


def _untar(data: bytes) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name.rstrip("/"): tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert "manifest.json" in files, f"the exported tar has no manifest.json; it holds {sorted(files)[:20]}"
    return files, json.loads(files["manifest.json"])


# ---------------------------------------------------------------- load


@pytest.mark.req("api.images.load-stream")
def test_load_reports_each_image(api: ApiClient, images: Images) -> None:
    refs = ["{}:{}".format(*images.new_ref("load")) for _ in range(2)]
    resp = _load(api, save_tar([_spec(r) for r in refs], _base_layer()))
    assert resp.status_code == 200, f"POST /images/load answered {resp.status_code}: {resp.text[:300]}"
    docs = json_lines(resp.content)
    lines = "".join(d.get("stream", "") for d in docs if isinstance(d, dict))
    for ref in refs:
        assert f"Loaded image: {ref}" in lines, f"the load stream {resp.text[:400]!r} does not say 'Loaded image: {ref}'"
        assert _inspect(api, ref)["Config"]["Labels"].get(OWN_LABEL) == ref, f"{ref} was loaded with another config"


@pytest.mark.req("api.images.load-quiet")
def test_load_quiet(api: ApiClient, images: Images) -> None:
    ref = "{}:{}".format(*images.new_ref("quiet"))
    resp = _load(api, save_tar([_spec(ref)], _base_layer()), quiet=True)
    assert resp.status_code == 200, f"POST /images/load?quiet=1 answered {resp.status_code}: {resp.text[:300]}"
    assert f"Loaded image: {ref}" in resp.text, f"the quiet load answered {resp.text[:300]!r}, without 'Loaded image: {ref}'"
    assert all(isinstance(d, dict) for d in json_lines(resp.content)), "the quiet load body is not JSON documents"


@pytest.mark.req("api.images.load-invalid")
@pytest.mark.parametrize("body", [b"this is not a tar archive\n" * 40, b""], ids=["garbage", "empty"])
def test_load_invalid(api: ApiClient, body: bytes) -> None:
    resp = _load(api, body)
    assert "Loaded image" not in resp.text, f"a load of a non-archive reported success: {resp.text[:300]!r}"
    if resp.status_code == 200:
        # dockerd has already sent 200 when it reads the tar, so the error is a document in the stream.
        errors = [d for d in json_lines(resp.content) if isinstance(d, dict) and (d.get("error") or d.get("errorDetail"))]
        assert errors, f"POST /images/load of a non-archive answered 200 without an error document: {resp.text[:300]!r}"
    else:
        assert resp.status_code in (400, 500), f"POST /images/load of a non-archive answered {resp.status_code}"
        assert error_message(resp), f"the {resp.status_code} body {resp.text[:200]!r} is not {{'message': ...}}"


# ---------------------------------------------------------------- list


@pytest.mark.req("api.images.list")
def test_list_includes_probe(api: ApiClient, probe: ProbeImages) -> None:
    entries = _list(api)
    for ref in probe.all:
        found = [e for e in entries if ref in (e.get("RepoTags") or [])]
        assert len(found) == 1, f"GET /images/json lists {ref} {len(found)} times; expected once"
        e = found[0]
        assert IMAGE_ID.match(e["Id"]), f"{ref}: Id {e['Id']!r} is not sha256:<64 hex>"
        assert e["Id"] == _inspect(api, ref)["Id"], f"{ref}: the list Id differs from the inspect Id"
        assert e["Size"] > 1_000_000, f"{ref}: Size {e['Size']} is not the size of a busybox image"
        assert e["Created"] == PROBE_CREATED, f"{ref}: Created {e['Created']} is not the config's {PROBE_CREATED}"


@pytest.mark.req("api.images.list-filter-reference")
def test_list_filter_reference_exact(api: ApiClient, probe: ProbeImages) -> None:
    entries = _list(api, {"reference": [probe.config]})
    tags = _tags(entries)
    assert probe.config in tags, f"reference={probe.config} did not list it: {sorted(tags)[:10]}"
    assert probe.base not in tags, f"reference={probe.config} also listed {probe.base}"


@pytest.mark.req("api.images.list-filter-reference")
def test_list_filter_reference_repository(api: ApiClient, probe: ProbeImages) -> None:
    repo = probe.base.rpartition(":")[0]
    tags = _tags(_list(api, {"reference": [repo]}))
    assert set(probe.all) <= tags, f"reference={repo} listed {sorted(tags)[:10]}; expected every tag of the repository"


@pytest.mark.req("api.images.list-filter-label")
@pytest.mark.parametrize("label", ["org.conformance.probe=config", "org.conformance.variant"])
def test_list_filter_label(api: ApiClient, probe: ProbeImages, label: str) -> None:
    entries = _list(api, {"label": [label]})
    key, _, value = label.partition("=")
    for e in entries:
        got = (e.get("Labels") or {}).get(key)
        assert got is not None and (not value or got == value), f"label={label} listed {e['Id'][:19]} with labels {e.get('Labels')}"
    tags = _tags(entries)
    assert probe.config in tags, f"label={label} did not list {probe.config}"
    assert probe.base not in tags, f"label={label} listed {probe.base}, which has no such label"


@pytest.mark.req("api.images.list-filter-dangling")
def test_list_filter_dangling_false(api: ApiClient, probe: ProbeImages) -> None:
    entries = _list(api, {"dangling": ["false"], "reference": [probe.base.rpartition(":")[0]]})
    assert set(probe.all) <= _tags(entries), f"dangling=false did not list the tagged probe images: {_tags(entries)}"


@pytest.mark.req("api.images.list-filter-dangling")
def test_list_filter_dangling_true(api: ApiClient, probe: ProbeImages) -> None:
    entries = _list(api, {"dangling": ["true"]})
    for e in entries:
        real = [t for t in e.get("RepoTags") or [] if t != "<none>:<none>"]
        assert not real, f"dangling=true listed {e['Id'][:19]}, which is tagged {real}"


# ---------------------------------------------------------------- inspect


@pytest.mark.req("api.images.inspect")
@pytest.mark.parametrize("form", ["tag", "full-id", "bare-id", "short-id"])
def test_inspect_by_name_or_id(api: ApiClient, probe: ProbeImages, form: str) -> None:
    iid = _inspect(api, probe.config)["Id"]
    assert IMAGE_ID.match(iid), f"Id {iid!r} is not sha256:<64 hex>"
    name = {"tag": probe.config, "full-id": iid, "bare-id": iid[7:], "short-id": iid[7:19]}[form]
    body = _inspect(api, name)
    assert body["Id"] == iid, f"GET /images/{name}/json gave Id {body['Id']}, expected {iid}"
    assert probe.config in (body.get("RepoTags") or []), f"RepoTags {body.get('RepoTags')} lack {probe.config}"


@pytest.mark.req("api.images.inspect-rootfs")
@pytest.mark.parametrize("which,layers", [("base", 1), ("config", 2)])
def test_inspect_rootfs(api: ApiClient, probe: ProbeImages, which: str, layers: int) -> None:
    rootfs = _inspect(api, getattr(probe, which))["RootFS"]
    assert rootfs.get("Type") == "layers", f"RootFS.Type is {rootfs.get('Type')!r}, expected 'layers'"
    got = rootfs.get("Layers") or []
    assert len(got) == layers, f"the {which} probe image has {len(got)} layers in RootFS; it was loaded with {layers}"
    assert all(IMAGE_ID.match(d) for d in got), f"RootFS.Layers {got} are not sha256 diff IDs"
    base_layer = _inspect(api, probe.base)["RootFS"]["Layers"][0]
    assert got[0] == base_layer, "the same busybox layer has a different diff ID in the two probe images"


@pytest.mark.req("api.images.inspect-config")
def test_inspect_config(api: ApiClient, probe: ProbeImages) -> None:
    body = _inspect(api, probe.config)
    cfg = body["Config"]
    expected = {"Entrypoint": ["/bin/echo", "entrypoint"], "Cmd": ["default-cmd"], "WorkingDir": "/srv",
                "ExposedPorts": {"8080/tcp": {}}, "Volumes": {"/data": {}}, "StopSignal": "SIGUSR1"}
    for key, value in expected.items():
        assert cfg.get(key) == value, f"Config.{key} is {cfg.get(key)!r}; the image config says {value!r}"
    assert "PROBE_ENV=from-image" in (cfg.get("Env") or []), f"Config.Env {cfg.get('Env')} lacks PROBE_ENV=from-image"
    assert (cfg.get("Labels") or {}).get("org.conformance.variant") == "rich", f"Config.Labels are {cfg.get('Labels')}"
    assert body["Os"] == "linux", f"Os is {body['Os']!r}"
    assert body["Created"].startswith("2023-11-14T22:13:20"), f"Created {body['Created']!r} is not the config's"


@pytest.mark.req("api.images.inspect-unknown")
def test_inspect_unknown(api: ApiClient, names: Names) -> None:
    resp = api.get(f"/images/{names('absent')}:none/json")
    assert resp.status_code == 404, f"inspecting an unknown image answered {resp.status_code}; the schema says 404"
    assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


# ---------------------------------------------------------------- tag


@pytest.mark.req("api.images.tag")
def test_tag(api: ApiClient, images: Images, probe: ProbeImages) -> None:
    repo, tag = images.new_ref("tag")
    resp = api.post(f"/images/{probe.base}/tag", params={"repo": repo, "tag": tag})
    assert resp.status_code == 201, f"POST /images/{{name}}/tag answered {resp.status_code}; the schema says 201"
    assert _inspect(api, f"{repo}:{tag}")["Id"] == _inspect(api, probe.base)["Id"], "the new tag names another image"


@pytest.mark.req("api.images.tag-default-latest")
def test_tag_without_tag_is_latest(api: ApiClient, images: Images, probe: ProbeImages) -> None:
    repo, _ = images.new_ref("latest", tag="latest")
    resp = api.post(f"/images/{probe.base}/tag", params={"repo": repo})
    assert resp.status_code == 201, f"tagging without a tag answered {resp.status_code}"
    assert f"{repo}:latest" in _inspect(api, probe.base)["RepoTags"], f"{repo}:latest was not created"


@pytest.mark.req("api.images.tag-invalid-repo")
@pytest.mark.deviation("docker", reason="dockerd 20.10 does not mark the reference parse error as a bad "
                       "parameter, so an uppercase repository name answers 500")
def test_tag_invalid_repo_400(api: ApiClient, names: Names, probe: ProbeImages) -> None:
    resp = api.post(f"/images/{probe.base}/tag", params={"repo": names("UPPER").upper(), "tag": "t"})
    assert resp.status_code == 400, f"tagging with an uppercase repository answered {resp.status_code}; the schema says 400"


@pytest.mark.req("api.images.tag-invalid-refused")
def test_tag_invalid_repo_refused(api: ApiClient, names: Names, probe: ProbeImages) -> None:
    repo = names("UPPER").upper()
    resp = api.post(f"/images/{probe.base}/tag", params={"repo": repo, "tag": "t"})
    assert resp.status_code >= 400, f"tagging with the invalid repository {repo} answered {resp.status_code}"
    assert error_message(resp), f"the {resp.status_code} body {resp.text[:200]!r} is not {{'message': ...}}"
    tags = _inspect(api, probe.base)["RepoTags"]
    assert not [t for t in tags if t.lower().startswith(repo.lower())], f"an invalid tag appeared anyway: {tags}"


@pytest.mark.req("api.images.tag-unknown")
def test_tag_unknown(api: ApiClient, names: Names) -> None:
    resp = api.post(f"/images/{names('absent')}:none/tag", params={"repo": names("never"), "tag": "t"})
    assert resp.status_code == 404, f"tagging an unknown image answered {resp.status_code}; the schema says 404"
    assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


# ---------------------------------------------------------------- history


@pytest.mark.req("api.images.history")
def test_history(api: ApiClient, probe: ProbeImages) -> None:
    resp = api.get(f"/images/{probe.config}/history")
    assert resp.status_code == 200, f"GET /images/{{name}}/history answered {resp.status_code}"
    entries = resp.json()
    created_by = [e["CreatedBy"] for e in entries]
    # Newest first, one entry per history item of the image config.
    assert created_by == ["conformance-harness: probe files", "conformance-harness: busybox-static rootfs"], (
        f"history CreatedBy is {created_by}; the image config says probe files on top of the busybox rootfs")
    assert all(e["Created"] == PROBE_CREATED for e in entries), f"history Created {[e['Created'] for e in entries]}"
    image = _inspect(api, probe.config)
    assert entries[0]["Id"] == image["Id"], f"the newest history entry has Id {entries[0]['Id']}, not the image's"
    assert probe.config in (entries[0].get("Tags") or []), f"the newest entry's Tags {entries[0].get('Tags')}"
    assert sum(e["Size"] for e in entries) == image["Size"], (
        f"history sizes {[e['Size'] for e in entries]} do not add up to the image Size {image['Size']}")


@pytest.mark.req("api.images.history-unknown")
def test_history_unknown(api: ApiClient, names: Names) -> None:
    resp = api.get(f"/images/{names('absent')}:none/history")
    assert resp.status_code == 404, f"history of an unknown image answered {resp.status_code}; the schema says 404"
    assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


# ---------------------------------------------------------------- remove


@pytest.mark.req("api.images.remove-untag")
def test_remove_one_of_two_tags(api: ApiClient, images: Images, probe: ProbeImages) -> None:
    repo, tag = images.new_ref("untag")
    assert api.post(f"/images/{probe.base}/tag", params={"repo": repo, "tag": tag}).status_code == 201
    resp = api.delete(f"/images/{repo}:{tag}")
    assert resp.status_code == 200, f"DELETE /images/{{name}} of an extra tag answered {resp.status_code}"
    assert resp.json() == [{"Untagged": f"{repo}:{tag}"}], (
        f"removing one of several tags answered {resp.json()}; expected only [{{'Untagged': '{repo}:{tag}'}}]")
    assert api.get(f"/images/{repo}:{tag}/json").status_code == 404, "the removed tag still resolves"
    assert _inspect(api, probe.base)["Id"], "the image is gone with its extra tag"


@pytest.mark.req("api.images.remove-last-tag")
def test_remove_last_tag_deletes(api: ApiClient, images: Images) -> None:
    ref, iid = _own_image(api, images, "last")
    resp = api.delete(f"/images/{ref}")
    assert resp.status_code == 200, f"DELETE /images/{ref} answered {resp.status_code}: {resp.text[:200]}"
    body = resp.json()
    assert {"Untagged": ref} in body, f"the delete answered {body}; no Untagged entry for {ref}"
    assert {"Deleted": iid} in body, f"the delete answered {body}; the image {iid} lost its last tag but was not Deleted"
    assert api.get(f"/images/{iid}/json").status_code == 404, "the deleted image can still be inspected"


@pytest.mark.req("api.images.remove-in-use")
@pytest.mark.parametrize("by", ["tag", "id"])
def test_remove_in_use_conflict(api: ApiClient, images: Images, containers: Containers, by: str) -> None:
    ref, iid = _own_image(api, images, "inuse")
    containers.create(["true"], image=ref)
    resp = api.delete(f"/images/{ref if by == 'tag' else iid}")
    assert resp.status_code == 409, (
        f"removing an image a (created) container uses, by {by}, answered {resp.status_code}; the schema says 409")
    assert error_message(resp), f"the 409 body {resp.text[:200]!r} is not {{'message': ...}}"
    assert _inspect(api, ref)["Id"] == iid, "the image changed although the removal was refused"


@pytest.mark.req("api.images.remove-force")
def test_remove_in_use_force(api: ApiClient, images: Images, containers: Containers) -> None:
    ref, iid = _own_image(api, images, "force")
    containers.create(["true"], image=ref)
    resp = api.delete(f"/images/{ref}", params={"force": 1})
    assert resp.status_code == 200, f"DELETE /images/{ref}?force=1 answered {resp.status_code}: {resp.text[:200]}"
    assert {"Untagged": ref} in resp.json(), f"the forced delete answered {resp.json()} without Untagged {ref}"
    assert api.get(f"/images/{ref}/json").status_code == 404, f"{ref} still resolves after a forced removal"


@pytest.mark.req("api.images.remove-multiple-repos")
def test_remove_by_id_with_several_tags(api: ApiClient, images: Images) -> None:
    ref, iid = _own_image(api, images, "multi")
    repo2, tag2 = images.new_ref("multi2")
    assert api.post(f"/images/{ref}/tag", params={"repo": repo2, "tag": tag2}).status_code == 201
    resp = api.delete(f"/images/{iid}")
    assert resp.status_code == 409, f"removing by ID an image with two tags answered {resp.status_code}, expected 409"
    resp = api.delete(f"/images/{iid}", params={"force": 1})
    assert resp.status_code == 200, f"the forced removal answered {resp.status_code}: {resp.text[:200]}"
    body = resp.json()
    for entry in ({"Untagged": ref}, {"Untagged": f"{repo2}:{tag2}"}, {"Deleted": iid}):
        assert entry in body, f"the forced removal answered {body}; {entry} is missing"


@pytest.mark.req("api.images.remove-unknown")
def test_remove_unknown(api: ApiClient, names: Names) -> None:
    resp = api.delete(f"/images/{names('absent')}:none")
    assert resp.status_code == 404, f"removing an unknown image answered {resp.status_code}; the schema says 404"
    assert error_message(resp), f"the 404 body {resp.text[:200]!r} is not {{'message': ...}}"


# ---------------------------------------------------------------- export


@pytest.mark.req("api.images.get")
def test_get_by_name(api: ApiClient, images: Images) -> None:
    ref, iid = _own_image(api, images, "save")
    resp = api.get(f"/images/{ref}/get", timeout=120)
    assert resp.status_code == 200, f"GET /images/{ref}/get answered {resp.status_code}"
    assert resp.headers.get("Content-Type", "").startswith("application/x-tar"), (
        f"Content-Type is {resp.headers.get('Content-Type')!r}; the schema says application/x-tar")
    files, manifest = _untar(resp.content)
    assert [m.get("RepoTags") for m in manifest] == [[ref]], f"manifest.json lists {manifest}; expected one image tagged {ref}"
    config = json.loads(files[manifest[0]["Config"]])
    assert config["config"]["Labels"][OWN_LABEL] == ref, "the exported config is not the image's"
    for layer in manifest[0]["Layers"]:
        assert layer in files, f"manifest.json names the layer {layer}, which is not in the tar"
    repo, _, tag = ref.rpartition(":")
    assert tag in json.loads(files.get("repositories", b"{}")).get(repo, {}), "the repositories file does not name the tag"


@pytest.mark.req("api.images.get-by-id")
def test_get_by_id_has_no_names(api: ApiClient, images: Images) -> None:
    ref, iid = _own_image(api, images, "saveid")
    resp = api.get(f"/images/{iid}/get", timeout=120)
    assert resp.status_code == 200, f"GET /images/{{id}}/get answered {resp.status_code}"
    files, manifest = _untar(resp.content)
    assert len(manifest) == 1 and not manifest[0].get("RepoTags"), f"an export by ID names tags: {manifest}"
    assert "repositories" not in files, "an export by ID has a repositories file; the schema says it is left out"


@pytest.mark.req("api.images.get-multiple")
def test_get_several(api: ApiClient, images: Images) -> None:
    (ref1, _), (ref2, _) = _own_image(api, images, "many"), _own_image(api, images, "many")
    resp = api.get("/images/get", params={"names": [ref1, ref2]}, timeout=120)
    assert resp.status_code == 200, f"GET /images/get?names=…&names=… answered {resp.status_code}"
    _, manifest = _untar(resp.content)
    tags = sorted(t for m in manifest for t in m.get("RepoTags") or [])
    assert tags == sorted([ref1, ref2]), f"the export of two images lists {tags}"


@pytest.mark.req("api.images.get-unknown")
def test_get_unknown(api: ApiClient, names: Names) -> None:
    resp = api.get(f"/images/{names('absent')}:none/get")
    assert resp.status_code == 404, f"exporting an unknown image answered {resp.status_code}, expected 404"
    assert error_message(resp), f"the body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.images.save-load-roundtrip")
def test_save_load_roundtrip(api: ApiClient, images: Images) -> None:
    ref, iid = _own_image(api, images, "trip")
    saved = api.get(f"/images/{ref}/get", timeout=120)
    assert saved.status_code == 200, f"GET /images/{ref}/get answered {saved.status_code}"
    assert api.delete(f"/images/{ref}").status_code == 200, f"could not remove {ref} before loading it back"
    resp = _load(api, saved.content, quiet=True)
    assert resp.status_code == 200 and f"Loaded image: {ref}" in resp.text, (
        f"loading the exported tar answered {resp.status_code} {resp.text[:300]!r}")
    assert _inspect(api, ref)["Id"] == iid, "the image ID changed on a save/load round trip"
