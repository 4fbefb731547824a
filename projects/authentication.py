"""The API's bearer-token authentication with the token's workspace binding read in the same statement."""

from accounts.authentication import BearerTokenAuthentication


class WorkspaceBoundTokenAuthentication(BearerTokenAuthentication):
    """:class:`~accounts.authentication.BearerTokenAuthentication` that also joins the token's
    :class:`~projects.models.TokenWorkspace`: every API request asks the permission module and the
    rate limits what the token is bound to, so the answer comes with the token, not a query later."""

    token_related = ("user", "workspace_binding")
