"""What accounts announces; other apps (the audit log, workspace bindings) receive it.

- ``token_issued(sender, token, by)``: a token was created; ``by`` is the user who created it
  (None from a command line or a test).
- ``token_revoked(sender, token, by)``: a token was revoked by ``by``.
- ``token_refused(sender, token, reason)``: a request presented a real token (its full value
  matched) that may not be used; ``reason`` is ``"expired"`` or ``"revoked"``.

``sender`` is :class:`accounts.models.ApiToken`. The raw secret is never sent.
"""

from django.dispatch import Signal

token_issued = Signal()
token_revoked = Signal()
token_refused = Signal()

REFUSED_EXPIRED = "expired"
REFUSED_REVOKED = "revoked"
