"""`POST /auth`: check credentials against a registry's `/v2/`, as dockerd's loginV2."""

from __future__ import annotations

import requests

from .auth import AuthConfig
from .client import RegistryClient
from .endpoint import for_server_address
from .errors import RegistryError, transport_error


def login(config: AuthConfig) -> dict[str, str]:
    """{"IdentityToken", "Status"} on success; RegistryError (500, dockerd's text) otherwise."""
    endpoint = for_server_address(config.serveraddress)
    client = RegistryClient(endpoint, "", config)
    url = endpoint.url("/v2/")
    try:
        resp = client.ping()
        if resp.status_code == 200 or client.auth.challenge is None:
            return {"IdentityToken": "", "Status": "Login Succeeded"}
        identity = ""
        given_identity = config.identitytoken
        if client.auth.challenge.scheme == "bearer":
            try:
                token = client.auth.token("", offline=True)
            except RegistryError as exc:
                if "unauthorized" in str(exc):
                    raise RegistryError(f'Get "{url}": unauthorized: incorrect username or password') from None
                raise
            headers = {"Authorization": f"Bearer {token}"}
            # A refresh token the server handed out (offline_token) becomes the IdentityToken.
            identity = config.identitytoken if config.identitytoken != given_identity else ""
        else:
            basic = client.auth.header("")
            headers = {"Authorization": basic} if basic else {}
        try:
            check = client.session.get(url, headers=headers, timeout=30)
        except requests.RequestException as exc:
            raise transport_error("Get", url, exc) from None
        if check.status_code != 200:
            raise RegistryError(f"login attempt to {url} failed with status: {check.status_code} {check.reason}")
        return {"IdentityToken": identity, "Status": "Login Succeeded"}
    finally:
        client.close()
