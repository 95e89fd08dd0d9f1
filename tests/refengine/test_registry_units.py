"""The registry client's pure parts: credentials, challenges, endpoints, references, messages."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os

import pytest
import requests

from refengine.engine.images import pull_reference
from refengine.engine.progress_stream import error_line
from refengine.images.distribution import auth as authmod
from refengine.images.distribution import endpoint, errors
from refengine.images.distribution.pull import select_platform
from refengine.images.distribution.push import Blob, compress, manifest_bytes
from refengine.images.errors import InvalidReference
from refengine.images.reference import parse_normalized_named


def b64url(data: dict[str, str], pad: bool = True) -> str:
    text = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
    return text if pad else text.rstrip("=")


@pytest.mark.parametrize("pad", [True, False])
def test_auth_header_decodes_with_or_without_padding(pad: bool) -> None:
    config = authmod.decode_auth_header(b64url({"username": "u", "password": "p?>", "serveraddress": "h:1"}, pad))
    assert (config.username, config.password, config.serveraddress) == ("u", "p?>", "h:1")


def test_auth_header_legacy_auth_field_and_identity_token() -> None:
    legacy = authmod.decode_auth_header(b64url({"auth": base64.b64encode(b"bob:pw:with:colons").decode()}))
    assert (legacy.username, legacy.password) == ("bob", "pw:with:colons")
    assert authmod.decode_auth_header(b64url({"identitytoken": "tok"})).identitytoken == "tok"
    assert not authmod.decode_auth_header("e30=").has_basic  # {} means anonymous


@pytest.mark.parametrize("bad", ["!!!", base64.urlsafe_b64encode(b"[1]").decode(), "bm90IGpzb24="])
def test_auth_header_garbage_is_an_error(bad: str) -> None:
    with pytest.raises(ValueError):
        authmod.decode_auth_header(bad)


def test_bearer_challenge_with_quoted_commas_and_escapes() -> None:
    [ch] = authmod.parse_challenges('Bearer realm="https://auth.example/token",service="reg",'
                                    'scope="repository:a/b:pull,push",error="say \\"hi\\""')
    assert ch.scheme == "bearer"
    assert ch.params == {"realm": "https://auth.example/token", "service": "reg",
                         "scope": "repository:a/b:pull,push", "error": 'say "hi"'}


def test_several_challenges_in_one_header() -> None:
    got = authmod.parse_challenges('Basic realm="r1", Bearer realm="https://t/x",service=s')
    assert [(c.scheme, c.params) for c in got] == [("basic", {"realm": "r1"}),
                                                   ("bearer", {"realm": "https://t/x", "service": "s"})]
    assert authmod.parse_challenges("") == []


def test_basic_authorizer_header() -> None:
    a = authmod.Authorizer(requests.Session(), authmod.AuthConfig("u", "p"))
    assert a.header("x") is None  # no challenge seen: nothing is sent
    a.challenge = authmod.Challenge("basic", {"realm": "r"})
    assert a.header("x") == "Basic " + base64.b64encode(b"u:p").decode()
    anonymous = authmod.Authorizer(requests.Session(), authmod.AuthConfig())
    anonymous.challenge = a.challenge
    assert anonymous.header("x") is None


@pytest.mark.parametrize(("host", "secure"), [
    ("127.0.0.1:5000", False), ("127.3.4.5", False), ("localhost:5000", False), ("localhost", False),
    ("[::1]:5000", False), ("10.0.0.1:5000", True), ("registry.example.com", True), ("localhost.evil.com", True),
])
def test_only_loopback_registries_use_plain_http(host: str, secure: bool) -> None:
    assert endpoint.for_host(host).secure is secure


def test_docker_hub_names_its_registry_host() -> None:
    ep = endpoint.for_reference(parse_normalized_named("busybox"))
    assert ep.base_url == "https://registry-1.docker.io"
    assert endpoint.for_server_address("https://index.docker.io/v1/").host == "registry-1.docker.io"
    assert endpoint.for_server_address("http://127.0.0.1:5000/").base_url == "http://127.0.0.1:5000"
    assert endpoint.for_server_address("http://reg.example:5000").secure  # http:// is not honoured off loopback


def test_pull_reference_like_dockerd() -> None:
    assert str(pull_reference("busybox", "")) == "docker.io/library/busybox"  # all tags, as dockerd
    assert str(pull_reference("busybox:1", "")) == "docker.io/library/busybox:1"
    assert str(pull_reference("127.0.0.1:5000/a/b", "v2")) == "127.0.0.1:5000/a/b:v2"
    digest = "sha256:" + "a" * 64
    assert str(pull_reference("127.0.0.1:5000/a/b", digest)) == f"127.0.0.1:5000/a/b@{digest}"
    with pytest.raises(InvalidReference, match="invalid tag format"):
        pull_reference("a", "b@d")
    with pytest.raises(InvalidReference, match="must be lowercase"):
        pull_reference("127.0.0.1:5000/Up", "v1")


def test_platform_selection() -> None:
    entries = [{"digest": "sha256:1", "platform": {"os": "linux", "architecture": "arm64"}},
               {"digest": "sha256:2", "platform": {"os": "windows", "architecture": "amd64"}},
               {"digest": "sha256:3", "platform": {"os": "linux", "architecture": "amd64"}}]
    assert select_platform(entries, "amd64") == entries[2]
    assert select_platform(entries[:2], "amd64") is None


def test_compression_is_deterministic_and_reversible(tmp_path: os.PathLike[str]) -> None:
    src = os.path.join(tmp_path, "layer.tar")
    data = os.urandom(3000) * 50
    with open(src, "wb") as fh:
        fh.write(data)
    first, second = compress(src, str(tmp_path)), compress(src, str(tmp_path))
    assert first.digest == second.digest and first.path != second.path
    with open(first.path, "rb") as fh:
        raw = fh.read()
    assert first.digest == "sha256:" + hashlib.sha256(raw).hexdigest() and first.size == len(raw)
    assert gzip.decompress(raw) == data


def test_manifest_describes_what_is_uploaded() -> None:
    config = b'{"rootfs":{"type":"layers","diff_ids":[]}}'
    layer = Blob("sha256:" + "b" * 64, 42, "/nonexistent")
    doc = json.loads(manifest_bytes(config, [layer]))
    assert doc["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert doc["config"] == {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                             "digest": "sha256:" + hashlib.sha256(config).hexdigest()}
    assert doc["layers"] == [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 42,
                              "digest": layer.digest}]


def fake_response(status: int, body: object) -> requests.Response:
    resp = requests.Response()
    resp.status_code, resp.reason = status, "Whatever"
    resp._content = json.dumps(body).encode()
    return resp


def test_registry_error_texts() -> None:
    one = fake_response(404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
    assert errors.registry_message(one) == "manifest unknown: manifest unknown"
    two = fake_response(400, {"errors": [{"code": "A_B", "message": "x"}, {"code": "C", "message": "y"}]})
    assert errors.registry_message(two) == "errors:\na b: x\nc: y\n"
    assert errors.registry_message(fake_response(401, None)) == "unauthorized: authentication required"
    refused = errors.transport_error("Get", "http://127.0.0.1:1/v2/",
                                     requests.ConnectionError("[Errno 111] Connection refused"))
    assert str(refused) == 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'


def test_stream_error_line_shape() -> None:
    assert error_line(RuntimeError("boom")) == {"errorDetail": {"message": "boom"}, "error": "boom"}
