"""The Content-Security-Policy on every response (django-csp), settings.CONTENT_SECURITY_POLICY.

Our own pages need nothing inline. Two third-party HTML pages carry inline
styles we do not control: DRF's browsable API (``style=`` attributes and a
``<style>`` block for code highlighting) and the Swagger UI page (a
``<style>`` block). On those pages alone styles may be inline; scripts stay
``'self'`` everywhere (the Swagger UI loads its init script from a URL).
"""

from csp.middleware import CSPMiddleware as BaseCSPMiddleware

INLINE_STYLES = {"style-src": ["'unsafe-inline'"]}
INLINE_STYLE_VIEWS = {"api-docs"}


def _third_party_page_with_inline_styles(request, response) -> bool:
    renderer = getattr(response, "accepted_renderer", None)
    if renderer is not None and getattr(renderer, "format", None) == "api":
        return True
    match = getattr(request, "resolver_match", None)
    return match is not None and match.url_name in INLINE_STYLE_VIEWS


class CSPMiddleware(BaseCSPMiddleware):
    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        if not report_only and parts.update is None and _third_party_page_with_inline_styles(request, response):
            parts.update = INLINE_STYLES
        return parts
