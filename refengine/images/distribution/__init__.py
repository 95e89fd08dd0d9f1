"""A registry client for the distribution API v2: pull and push images, log in.

- `endpoint`: which registry a reference names, over https or (loopback only) plain http;
- `auth`: credentials from `X-Registry-Auth`/`POST /auth`, `WWW-Authenticate` challenges, basic
  auth and the bearer token flow of the distribution token spec;
- `client`: the HTTP calls (`/v2/` ping, manifests, blobs, uploads) and the registry's errors;
- `metadata`: which registry blobs hold which layers (so a push reuses or mounts them);
- `pull`, `push`, `login`, `inspect` (distribution inspect): the operations, written as generators of dockerd-shaped progress
  messages; they block (requests), so the engine runs them in worker threads.
"""

from .auth import AuthConfig, decode_auth_header
from .inspect import inspect
from .login import login
from .pull import pull
from .push import push

__all__ = ["AuthConfig", "decode_auth_header", "inspect", "login", "pull", "push"]
