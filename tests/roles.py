"""The role matrix: what owner, contributor, viewer, stranger and anonymous each get from one request.

Every permission test says the whole row, so none forgets the contributor or
anonymous::

    role_matrix(world, lambda client: client.get(url),
                {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 401})

Roles go from the least to the most privileged, so a write one role makes
cannot hide a refusal for a lesser one. ``check`` states what a role's answer
must hold beyond its status, right after its request (before a more
privileged role changes anything)::

    role_matrix(world, lambda client: client.post(url, {"name": "x"}), WRITE,
                check={"viewer": lambda response: Run.objects.get().name == "baseline"})

``service_matrix`` says the same of a service called directly with each role's user.
"""

from collections.abc import Callable, Mapping

from django.contrib.auth.models import AnonymousUser
from django.test import Client

from .conftest import client_for

ROLES = ("anonymous", "stranger", "viewer", "contributor", "owner")


def browser(user) -> Client:
    """A Django test client logged in as ``user`` by session (``None``: anonymous), for UI pages."""
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def role_matrix(
    world: Mapping,
    request: Callable,
    expected: Mapping[str, int],
    *,
    ui: bool = False,
    check: Mapping[str, Callable] | None = None,
) -> dict:
    """Send ``request(client)`` as each role; fail unless every status is the expected one.

    ``world`` maps role names to users (the ``world`` fixture); ``ui`` uses a
    session-logged-in browser client, otherwise an API client with a bearer
    token. In the UI an anonymous 302 must lead to the login page. ``check``
    maps roles to a predicate on that role's response, called right after its
    request. A streamed body is read, which closes the file behind it.
    Returns the responses by role for further checks.
    """
    assert set(expected) == set(ROLES), f"name every role; missing {sorted(set(ROLES) - set(expected))}"
    assert set(check or {}) <= set(ROLES), f"unknown roles in check: {sorted(set(check or {}) - set(ROLES))}"
    responses, failed = {}, []
    for role in ROLES:
        client = browser(world[role]) if ui else client_for(world[role])
        response = responses[role] = request(client)
        if response.streaming:
            b"".join(response.streaming_content)
        if check and role in check and not check[role](response):
            failed.append(role)
    got = {role: responses[role].status_code for role in ROLES}
    assert got == {role: expected[role] for role in ROLES}
    assert failed == [], f"the check failed for {failed}"
    if ui and got["anonymous"] == 302:
        assert "/accounts/login/" in responses["anonymous"]["Location"]
    return responses


def service_matrix(world: Mapping, call: Callable, expected: Mapping[str, type[Exception] | None]) -> None:
    """Call ``call(user)`` as each role (anonymous: ``AnonymousUser``); ``expected`` names, per role,
    the exception the service must raise, or ``None`` where it must succeed."""
    assert set(expected) == set(ROLES), f"name every role; missing {sorted(set(ROLES) - set(expected))}"
    got = {}
    for role in ROLES:
        try:
            call(world[role] or AnonymousUser())
        except Exception as exc:  # any outcome is compared below
            got[role] = type(exc)
        else:
            got[role] = None
    assert got == {role: expected[role] for role in ROLES}
