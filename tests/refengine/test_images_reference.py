"""Reference parsing and normalization, as docker/distribution's `reference` package does it."""

from __future__ import annotations

import pytest

from refengine.images import reference as refs
from refengine.images.errors import InvalidReference
from refengine.images.reference import DigestReference

DIGEST = "sha256:" + "0123456789abcdef" * 4

NORMALIZED = [
    # text, full string, familiar string, domain, path, tag, digest
    ("busybox", "docker.io/library/busybox", "busybox", "docker.io", "library/busybox", None, None),
    ("busybox:latest", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox",
     "latest", None),
    ("library/busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36", "docker.io", "library/busybox",
     "1.36", None),
    ("docker.io/busybox", "docker.io/library/busybox", "busybox", "docker.io", "library/busybox", None, None),
    ("index.docker.io/library/busybox", "docker.io/library/busybox", "busybox", "docker.io", "library/busybox",
     None, None),
    ("foo/bar:v1", "docker.io/foo/bar:v1", "foo/bar:v1", "docker.io", "foo/bar", "v1", None),
    ("localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000", "x", "y", None),
    ("localhost/x", "localhost/x", "localhost/x", "localhost", "x", None, None),
    ("example.com/a/b/c:1.0-rc_1", "example.com/a/b/c:1.0-rc_1", "example.com/a/b/c:1.0-rc_1", "example.com",
     "a/b/c", "1.0-rc_1", None),
    ("Registry.Example.com:443/ns/app", "Registry.Example.com:443/ns/app", "Registry.Example.com:443/ns/app",
     "Registry.Example.com:443", "ns/app", None, None),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}", "docker.io",
     "library/busybox", None, DIGEST),
    (f"busybox:tag@{DIGEST}", f"docker.io/library/busybox:tag@{DIGEST}", f"busybox:tag@{DIGEST}", "docker.io",
     "library/busybox", "tag", DIGEST),
    ("a_b__c-d---e/g", "docker.io/a_b__c-d---e/g", "a_b__c-d---e/g", "docker.io", "a_b__c-d---e/g", None, None),
    # A first component with a dot is a domain; this one isn't a valid domain, so Go's regexp
    # leaves the domain empty and the whole text is the path (dockerd's quirk, kept).
    ("a_b.c/g", "a_b.c/g", "a_b.c/g", "", "a_b.c/g", None, None),
    ("sha256:abcd", "docker.io/library/sha256:abcd", "sha256:abcd", "docker.io", "library/sha256", "abcd", None),
]


@pytest.mark.parametrize("text, full, familiar, domain, path, tag, digest", NORMALIZED)
def test_parse_normalized_named(text: str, full: str, familiar: str, domain: str, path: str, tag: str | None,
                                digest: str | None) -> None:
    ref = refs.parse_normalized_named(text)
    assert (str(ref), ref.familiar, ref.domain, ref.path, ref.tag, ref.digest) == (full, familiar, domain, path,
                                                                                    tag, digest)


ERRORS = [
    ("", "invalid reference format"),
    ("Busybox", "invalid reference format: repository name must be lowercase"),
    ("busybox:", "invalid reference format"),
    ("busybox::tag", "invalid reference format"),
    ("-busybox", "invalid reference format"),
    ("busybox/", "invalid reference format"),
    ("a:b:c", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("busybox:-tag", "invalid reference format"),
    ("0123456789abcdef" * 4, "cannot specify 64-byte hexadecimal strings"),
    ("a/" * 127 + "abc", "repository name must not be more than 255 characters"),
    ("busybox@sha256:" + "a" * 32, "invalid checksum digest length"),
    ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("busybox@sha256:" + "A" * 64, "invalid checksum digest format"),
    ("EXAMPLE.com/Foo", "invalid reference format: repository name must be lowercase"),
    ("a" * 300 + ":" + "t" * 200, "invalid reference format"),  # fails fast (no regex blow-up)
]


@pytest.mark.parametrize("text, message", ERRORS)
def test_invalid_references(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as info:
        refs.parse_normalized_named(text)
    assert message in str(info.value)
    assert info.value.http_status == 400


def test_any_reference_ids_and_digests() -> None:
    hex64 = "ab" * 32
    assert refs.parse_any_reference(hex64) == DigestReference("sha256:" + hex64)
    assert refs.parse_any_reference("sha256:" + hex64) == DigestReference("sha256:" + hex64)
    named = refs.parse_any_reference("abcdef")
    assert not isinstance(named, DigestReference) and named.familiar == "abcdef"  # an ID prefix is a valid name


def test_default_tag_store_key_and_trim() -> None:
    ref = refs.parse_normalized_named("busybox")
    assert ref.is_name_only and ref.with_default_tag().familiar == "busybox:latest"
    both = refs.parse_normalized_named(f"busybox:tag@{DIGEST}")
    assert both.store_key().familiar == f"busybox@{DIGEST}"  # dockerd keeps only the digest
    assert refs.parse_tagged("localhost:5000/app", "v2").familiar == "localhost:5000/app:v2"
    assert refs.parse_tagged("app:old", "new").familiar == "app:new"
    with pytest.raises(InvalidReference, match="invalid tag format"):
        refs.parse_tagged("app", "bad:tag")


@pytest.mark.parametrize("pattern, text, matches", [
    ("busybox", "busybox:latest", True),
    ("busy*", "busybox:1.0", True),
    ("busybox:1.*", "busybox:1.36", True),
    ("busybox:2*", "busybox:1.36", False),
    ("*", "foo/bar:latest", False),  # `*` stops at `/`, as Go's path.Match
    ("*/*", "foo/bar:latest", True),
    ("localhost:5000/*", "localhost:5000/app:v1", True),
])
def test_familiar_match(pattern: str, text: str, matches: bool) -> None:
    assert refs.familiar_match(pattern, refs.parse_normalized_named(text)) is matches
