from datetime import timedelta

from axes.backends import AxesStandaloneBackend
from django.utils import timezone
from rest_framework import authentication, exceptions

from tracker.context import current, set_token_prefix

from .models import ApiToken
from .signals import REFUSED_EXPIRED, REFUSED_REVOKED, token_refused

LAST_USED_EVERY = timedelta(minutes=1)  # last-used time and address are written at most this often per token


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses a password login while its account or its address is locked out (django-axes).

    A login made by code without a request (``Client.login`` in tests, a shell) has no
    address to count and is not throttled; every HTTP login passes its request.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class TokenRefused(exceptions.AuthenticationFailed):
    """401 with a code saying why (``token_invalid``, ``token_expired``, ``token_revoked``, ``user_inactive``)."""


def _refused(code: str, message: str) -> TokenRefused:
    return TokenRefused(f"Authorization: {message}", code=code)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <token>`` with a token from :class:`ApiToken`.

    On success ``request.auth`` is the :class:`ApiToken` (its ``scope`` caps what the
    request may do). A real token that is expired or revoked is refused with
    ``token_refused`` sent; the prefix of a token that matched goes into the request
    context either way.
    """

    keyword = "bearer"
    # Relations read with the token in one statement; an app above adds its own (a subclass).
    token_related: tuple[str, ...] = ("user",)

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.encode():
            return None
        if len(header) != 2:
            raise _refused("token_invalid", "header must be 'Bearer <token>'")
        try:
            raw = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise _refused("token_invalid", "API token contains invalid characters") from None
        token = ApiToken.find(raw, self.token_related)
        if token is None:
            raise _refused("token_invalid", "API token is not valid")
        set_token_prefix(token.prefix)
        if token.is_revoked:
            token_refused.send(sender=ApiToken, token=token, reason=REFUSED_REVOKED)
            raise _refused("token_revoked", f"API token {token.prefix} was revoked")
        if token.is_expired:
            token_refused.send(sender=ApiToken, token=token, reason=REFUSED_EXPIRED)
            raise _refused("token_expired", f"API token {token.prefix} expired at {token.expires_at.isoformat()}")
        if not token.user.is_active:
            raise _refused("user_inactive", f"API token {token.prefix} belongs to an inactive user")
        self._record_use(token)
        # The permission module caps what this request may do by the token's scope (and binding).
        token.user.api_token = token
        return token.user, token

    @staticmethod
    def _record_use(token: ApiToken) -> None:
        now = timezone.now()
        if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
            return
        address = current().address or None
        # The condition in the UPDATE keeps it to one write a minute across processes.
        stale = ApiToken.objects.filter(pk=token.pk).exclude(last_used_at__gt=now - LAST_USED_EVERY)
        if stale.update(last_used_at=now, last_used_ip=address):
            token.last_used_at, token.last_used_ip = now, address

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
