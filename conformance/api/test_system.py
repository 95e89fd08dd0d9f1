"""System endpoints and version negotiation (swagger: System tag)."""

from __future__ import annotations

import pytest

from conformance.client import ApiClient, error_message


def _json_ctype(resp) -> str:
    return resp.headers.get("Content-Type", "").split(";")[0].strip()


@pytest.mark.req("api.ping.get-ok")
def test_ping_get(api: ApiClient) -> None:
    resp = api.get("/_ping")
    assert resp.status_code == 200, f"GET /_ping answered {resp.status_code}; the schema says 200"
    assert resp.text == "OK", f"GET /_ping body was {resp.text!r}; the schema says 'OK'"


@pytest.mark.req("api.ping.head-ok")
def test_ping_head(api: ApiClient) -> None:
    resp = api.head("/_ping")
    assert resp.status_code == 200, f"HEAD /_ping answered {resp.status_code}, expected 200"
    assert resp.content == b"", f"HEAD /_ping sent a body {resp.content[:50]!r}"


@pytest.mark.req("api.ping.api-version-header")
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_ping_api_version_header(api: ApiClient, method: str) -> None:
    resp = api.request(method, "/_ping")
    version = api.get("/version").json()["ApiVersion"]
    assert resp.headers.get("API-Version") == version, (
        f"{method} /_ping API-Version header is {resp.headers.get('API-Version')!r}; /version says {version!r}")


@pytest.mark.req("api.ping.ostype-header")
def test_ping_ostype_header(api: ApiClient) -> None:
    resp = api.get("/_ping")
    assert resp.headers.get("OSType") == api.get("/version").json()["Os"], (
        f"/_ping OSType header is {resp.headers.get('OSType')!r}, /version Os is {api.get('/version').json()['Os']!r}")


@pytest.mark.req("api.ping.experimental-header")
def test_ping_experimental_header(api: ApiClient) -> None:
    value = api.get("/_ping").headers.get("Docker-Experimental")
    assert value in ("true", "false"), f"Docker-Experimental header is {value!r}, expected 'true' or 'false'"


@pytest.mark.req("api.ping.no-cache")
def test_ping_no_cache(api: ApiClient) -> None:
    resp = api.get("/_ping")
    cache = {p.strip() for p in resp.headers.get("Cache-Control", "").split(",")}
    assert {"no-cache", "no-store", "must-revalidate"} <= cache, f"Cache-Control is {resp.headers.get('Cache-Control')!r}"
    assert resp.headers.get("Pragma") == "no-cache", f"Pragma is {resp.headers.get('Pragma')!r}"


@pytest.mark.req("api.version.schema")
def test_version_schema(api: ApiClient) -> None:
    resp = api.get("/version")  # the client validates the body against SystemVersion
    assert resp.status_code == 200, f"GET /version answered {resp.status_code}"


@pytest.mark.req("api.version.api-range")
def test_version_api_range(api: ApiClient) -> None:
    body = api.get("/version").json()
    api_v = tuple(int(x) for x in body["ApiVersion"].split("."))
    min_v = tuple(int(x) for x in body["MinAPIVersion"].split("."))
    assert api_v >= (1, 40), f"ApiVersion {body['ApiVersion']} is below 1.40, which real docker clients refuse"
    assert min_v <= api_v, f"MinAPIVersion {body['MinAPIVersion']} is above ApiVersion {body['ApiVersion']}"


@pytest.mark.req("api.version.engine-component")
def test_version_components(api: ApiClient) -> None:
    comps = api.get("/version").json().get("Components")
    assert comps, "/version lists no Components"
    for c in comps:
        assert c.get("Name") and c.get("Version"), f"component without Name/Version: {c}"


@pytest.mark.req("api.version.json-content-type")
def test_version_content_type(api: ApiClient) -> None:
    resp = api.get("/version")
    assert _json_ctype(resp) == "application/json", f"Content-Type is {resp.headers.get('Content-Type')!r}"


@pytest.mark.req("api.info.schema")
def test_info_schema(api: ApiClient) -> None:
    assert api.get("/info").status_code == 200


@pytest.mark.req("api.info.container-counts")
def test_info_container_counts(api: ApiClient) -> None:
    info = api.get("/info").json()
    parts = info["ContainersRunning"] + info["ContainersPaused"] + info["ContainersStopped"]
    # Other workers may create containers between the reads of one response: the body is one snapshot.
    assert info["Containers"] == parts, (
        f"Containers={info['Containers']} but running+paused+stopped={parts}")


@pytest.mark.req("api.info.counts-follow-create")
def test_info_counts_follow_create(api: ApiClient, containers, capabilities) -> None:
    # Parallel workers create and remove containers too, so one reading can be masked by another worker
    # removing a stopped container in between: the count must grow in at least one of three tries.
    seen = []
    for _ in range(3):
        before = api.get("/info").json()["ContainersStopped"]
        cid = containers.create(["true"])
        after = api.get("/info").json()["ContainersStopped"]
        seen.append(f"{before} → {after} after creating {cid[:12]}")
        if after >= before + 1:
            return
    raise AssertionError("ContainersStopped did not count a created container: " + "; ".join(seen))


@pytest.mark.req("api.info.cgroup-version")
def test_info_cgroup_version(api: ApiClient) -> None:
    info = api.get("/info").json()
    assert info.get("CgroupVersion") in ("1", "2"), f"CgroupVersion is {info.get('CgroupVersion')!r}"


@pytest.mark.req("api.info.resources")
def test_info_resources(api: ApiClient) -> None:
    info = api.get("/info").json()
    assert info.get("NCPU", 0) >= 1, f"NCPU is {info.get('NCPU')!r}"
    assert info.get("MemTotal", 0) > 0, f"MemTotal is {info.get('MemTotal')!r}"


@pytest.mark.req("api.system.df")
def test_system_df(api: ApiClient, probe) -> None:
    resp = api.get("/system/df", timeout=120)
    assert resp.status_code == 200, f"GET /system/df answered {resp.status_code}"
    body = resp.json()
    for key in ("Images", "Containers", "Volumes"):
        assert key in body, f"/system/df has no {key}"
    tags = [t for img in body["Images"] or [] for t in img.get("RepoTags") or []]
    assert any(probe.base.split(":")[0] in t for t in tags), f"the loaded probe image is not among {tags[:10]}"


@pytest.mark.req("api.version.prefix-accepted")
@pytest.mark.parametrize("version", ["1.24", "1.30", "1.40", "1.41"])
def test_version_prefix(api: ApiClient, version: str) -> None:
    resp = api.request("GET", f"/v{version}/version", versioned=False)
    assert resp.status_code == 200, f"GET /v{version}/version answered {resp.status_code}: {resp.text[:200]}"


@pytest.mark.req("api.version.unprefixed-accepted")
def test_unprefixed(api: ApiClient) -> None:
    resp = api.get("/version", versioned=False)
    assert resp.status_code == 200, f"GET /version without prefix answered {resp.status_code}"


@pytest.mark.req("api.version.too-old")
def test_version_too_old(api: ApiClient) -> None:
    resp = api.request("GET", "/v1.0/version", versioned=False)
    assert resp.status_code == 400, f"GET /v1.0/version answered {resp.status_code}; the schema says 400"
    minimum = api.get("/version").json()["MinAPIVersion"]
    assert minimum in resp.text, f"the error {resp.text[:200]!r} does not name the minimum {minimum}"


@pytest.mark.req("api.version.too-new")
def test_version_too_new(api: ApiClient) -> None:
    resp = api.request("GET", "/v9.99/version", versioned=False)
    assert resp.status_code == 400, f"GET /v9.99/version answered {resp.status_code}, expected 400"
    maximum = api.get("/version").json()["ApiVersion"]
    assert maximum in resp.text, f"the error {resp.text[:200]!r} does not name the maximum {maximum}"


@pytest.mark.req("api.version.too-new-json")
def test_version_too_new_json(api: ApiClient) -> None:
    resp = api.request("GET", "/v9.99/version", versioned=False)
    assert _json_ctype(resp) == "application/json", f"Content-Type is {resp.headers.get('Content-Type')!r}"
    assert error_message(resp), f"body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.version.too-old-json")
@pytest.mark.deviation("docker", reason="dockerd 20.10 answers a too-old version with text/plain "
                       "(its version middleware writes the error with http.Error)")
def test_version_too_old_json(api: ApiClient) -> None:
    resp = api.request("GET", "/v1.0/version", versioned=False)
    assert _json_ctype(resp) == "application/json", f"Content-Type is {resp.headers.get('Content-Type')!r}"
    assert error_message(resp), f"body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.errors.unknown-path")
def test_unknown_path(api: ApiClient) -> None:
    resp = api.get("/no-such-endpoint", versioned=False)
    assert resp.status_code == 404, f"GET /no-such-endpoint answered {resp.status_code}"
    assert error_message(resp), f"404 body {resp.text[:200]!r} is not {{'message': ...}}"


@pytest.mark.req("api.errors.unknown-versioned-path")
def test_unknown_versioned_path(api: ApiClient) -> None:
    resp = api.get("/containers/x/no-such-action")
    assert resp.status_code == 404, f"GET …/no-such-action answered {resp.status_code}"
    assert error_message(resp), f"404 body {resp.text[:200]!r} is not {{'message': ...}}"
