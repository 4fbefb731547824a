from .refs import HUMAN_ID_PATTERN, SLUG_PATTERN, UUID_PATTERN


class RunRefConverter:
    """A run in a URL: its UUID, or ``workspace/project/KEY-N`` (read by ``runs.refs.parse_run_ref``)."""

    regex = f"{UUID_PATTERN}|{SLUG_PATTERN}/{SLUG_PATTERN}/{HUMAN_ID_PATTERN}"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return str(value)
