"""The role matrix: what owner, contributor, viewer, stranger and anonymous each get from one request.

Every permission test says the whole row, so none forgets the contributor or
anonymous::

    role_matrix(world, lambda client: client.get(url),
                {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 401})

Roles go from the least to the most privileged, so a write one role makes
cannot hide a refusal for a lesser one.
"""

from collections.abc import Callable, Mapping

from django.test import Client

from .conftest import client_for

ROLES = ("anonymous", "stranger", "viewer", "contributor", "owner")


def browser(user) -> Client:
    """A Django test client logged in as ``user`` by session (``None``: anonymous), for UI pages."""
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def role_matrix(world: Mapping, request: Callable, expected: Mapping[str, int], *, ui: bool = False) -> dict:
    """Send ``request(client)`` as each role; fail unless every status is the expected one.

    ``world`` maps role names to users (the ``world`` fixture); ``ui`` uses a
    session-logged-in browser client, otherwise an API client with a bearer
    token. Returns the responses by role for further checks.
    """
    assert set(expected) == set(ROLES), f"name every role; missing {sorted(set(ROLES) - set(expected))}"
    responses = {}
    for role in ROLES:
        client = browser(world[role]) if ui else client_for(world[role])
        responses[role] = request(client)
    got = {role: responses[role].status_code for role in ROLES}
    assert got == {role: expected[role] for role in ROLES}
    return responses
