"""Image references as Docker parses them (docker/distribution `reference`, go-digest).

`busybox` → `docker.io/library/busybox:latest`; the "familiar" form drops `docker.io/` and
`library/` again for display. The grammar is distribution's, written out as Python regexes
(Go's `\\w` is ASCII-only, so character classes are spelled out). Errors carry the library's texts,
which the docker CLI shows to users (`invalid reference format: repository name must be lowercase`).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, replace

from .errors import InvalidReference

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO = "library"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

# distribution's separator is `[._]|__|[-]*`; its empty alternative only lets two alphanumeric
# runs touch, which `[a-z0-9]+` already covers. Spelled `-+` here: Python's backtracking engine
# (unlike Go's RE2) goes exponential on the ambiguous form when a long reference fails to match.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_NAME_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*"

REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
ANCHORED_NAME_RE = re.compile(rf"^(?:({_DOMAIN})/)?({_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*)$")
TAG_RE = re.compile(rf"^{_TAG}$")
DIGEST_RE = re.compile(rf"^{_DIGEST}$")
IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
SHORT_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{6,64}$")

# go-digest's registered algorithms and their hex lengths.
_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class Reference:
    """A named reference: `domain/path[:tag][@digest]`, always normalized (domain filled in)."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full repository name: `docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """The repository as users write it: `busybox`, `foo/bar`, `localhost:5000/x`."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        parts = self.path.split("/")
        return parts[1] if len(parts) == 2 and parts[0] == OFFICIAL_REPO else self.path

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag is not None else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.name + self._suffix()

    @property
    def familiar(self) -> str:
        """`reference.FamiliarString`: what dockerd prints in RepoTags, `Loaded image:` and errors."""
        return self.familiar_name + self._suffix()

    @property
    def is_name_only(self) -> bool:
        return self.tag is None and self.digest is None

    @property
    def is_tagged(self) -> bool:
        return self.tag is not None

    @property
    def is_canonical(self) -> bool:
        return self.digest is not None

    def with_default_tag(self) -> Reference:
        """`reference.TagNameOnly`: a bare name gets `:latest`; anything else is unchanged."""
        return replace(self, tag=DEFAULT_TAG) if self.is_name_only else self

    def trim(self) -> Reference:
        """Only the repository name (`reference.TrimNamed`)."""
        return Reference(self.domain, self.path)

    def store_key(self) -> Reference:
        """The form the reference store keeps: a tag and a digest together keep only the digest."""
        if self.tag is not None and self.digest:
            return replace(self, tag=None)
        return self.with_default_tag()


@dataclass(frozen=True)
class DigestReference:
    """A bare digest (an image ID): `sha256:<64 hex>`, or 64 hex digits the user typed."""

    digest: str

    def __str__(self) -> str:
        return self.digest

    @property
    def familiar(self) -> str:
        return self.digest


def validate_digest(value: str) -> str:
    """go-digest's `Digest.Validate`, with its messages."""
    algo, sep, encoded = value.partition(":")
    if not algo or not sep or not encoded:
        raise InvalidReference("invalid checksum digest format")
    if algo not in _ALGORITHMS:
        if not DIGEST_RE.match(value):
            raise InvalidReference("invalid checksum digest format")
        raise InvalidReference("unsupported digest algorithm")
    if len(encoded) != _ALGORITHMS[algo]:
        raise InvalidReference("invalid checksum digest length")
    if not re.fullmatch(r"[a-f0-9]+", encoded):
        raise InvalidReference("invalid checksum digest format")
    return value


def _split_docker_domain(name: str) -> tuple[str, str]:
    """A first component is a domain only if it has a `.` or `:` or is `localhost`."""
    first, slash, rest = name.partition("/")
    if not slash or (not any(c in first for c in ".:") and first != "localhost"):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = f"{OFFICIAL_REPO}/{remainder}"
    return domain, remainder


def parse(text: str) -> Reference:
    """`reference.Parse`: the raw grammar, no normalization."""
    m = REFERENCE_RE.match(text)
    if not m:
        if text == "":
            raise InvalidReference("repository name must have at least one component")
        if REFERENCE_RE.match(text.lower()):
            raise InvalidReference("repository name must be lowercase")
        raise InvalidReference("invalid reference format")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    nm = ANCHORED_NAME_RE.match(name)
    domain, path = (nm.group(1) or "", nm.group(2)) if nm else ("", name)
    if digest:
        validate_digest(digest)
    return Reference(domain, path, tag, digest)


def parse_normalized_named(text: str) -> Reference:
    """`reference.ParseNormalizedNamed`: what every daemon endpoint uses on a user's image name."""
    if IDENTIFIER_RE.match(text):
        raise InvalidReference(f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_docker_domain(text)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReference("invalid reference format: repository name must be lowercase")
    return parse(f"{domain}/{remainder}")


def parse_any_reference(text: str) -> Reference | DigestReference:
    """`reference.ParseAnyReference`: 64 hex digits or `sha256:<hex>` are IDs, anything else a name."""
    if IDENTIFIER_RE.match(text):
        return DigestReference("sha256:" + text)
    try:
        return DigestReference(validate_digest(text))
    except InvalidReference:
        pass
    return parse_normalized_named(text)


def with_tag(ref: Reference, tag: str) -> Reference:
    """`reference.WithTag`: `invalid tag format` for a tag outside `[\\w][\\w.-]{0,127}`."""
    if not TAG_RE.match(tag):
        raise InvalidReference("invalid tag format")
    return replace(ref, tag=tag)


def with_digest(ref: Reference, digest: str) -> Reference:
    if not DIGEST_RE.match(digest):
        raise InvalidReference("invalid digest format")
    return replace(ref, digest=validate_digest(digest))


def parse_tagged(repo: str, tag: str = "") -> Reference:
    """The `repo` + `tag` query pair of `POST /images/{name}/tag`, `/commit`, `/images/create?fromSrc`."""
    ref = parse_normalized_named(repo)
    if tag:
        ref = with_tag(ref.trim(), tag)
    return ref


def familiar_match(pattern: str, ref: Reference) -> bool:
    """`reference.FamiliarMatch` for the `reference` filter: the glob against `name:tag` or the name."""
    return _path_match(pattern, ref.familiar) or _path_match(pattern, ref.familiar_name)


def _path_match(pattern: str, text: str) -> bool:
    # Go's path.Match: `*` does not cross `/`, which fnmatch's `*` would.
    parts_p, parts_t = pattern.split("/"), text.split("/")
    return len(parts_p) == len(parts_t) and all(fnmatch.fnmatchcase(t, p) for p, t in zip(parts_p, parts_t,
                                                                                             strict=True))
