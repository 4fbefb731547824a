class RunRefConverter:
    """A run in a URL: its UUID, or ``workspace/project/KEY-N``."""

    regex = (
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
        r"|[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Z][A-Z0-9]{1,9}-[0-9]{1,18}"
    )

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value
