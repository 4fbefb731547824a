"""A NUL byte in a route's path (or the artifact list's name filter) is a 400 naming it, not a 500 (PostgreSQL refuses NUL
in text, SQLite takes it): the artifact routes, whose names and hashes are free text in the path."""

import pytest

from tests.conftest import client_for

ROUTES = [
    "/api/v1/artifact-versions/ab%00cd",
    "/api/v1/artifacts/acme/name%00x",
    "/api/v1/artifacts/ac%00me/name",
    "/api/v1/workspaces/acme/artifact-versions/ab%00cd/lineage.zip",
    "/api/v1/workspaces/acme/artifact-versions/ab%00cd/erase-consumers",
    "/api/v1/workspaces/ac%00me/artifacts/",
    "/api/v1/workspaces/acme/artifacts/?name=a%00b",
    "/w/acme/-/artifacts/name%00x",
    "/w/acme/-/artifact-versions/ab%00cd/lineage.zip",
    "/w/acme/-/artifact-versions/ab%00cd/erase-consumers",
    "/w/ac%00me/-/artifacts/",
]


@pytest.mark.parametrize("url", ROUTES)
def test_a_nul_byte_in_an_artifact_route_is_a_client_error(owner, project, client, url):
    if url.startswith("/w/"):
        client.force_login(owner)
    response = (client if url.startswith("/w/") else client_for(owner)).get(url)
    assert response.status_code == 400, (response.status_code, response.content[:300])
    named = "name" if "?name=" in url else "path: contains a NUL byte"
    assert named in response.content.decode()
