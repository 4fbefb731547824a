"""Units of the hardware series the client logs under ``monitoring/`` (client/src/runstore/_internal/capture.py)."""

import re

_PERCENT = re.compile(r"(^|/)(cpu|memory_percent|utilization|[a-z_]*_percent)$")
_GIB = re.compile(r"(^|/)(memory|memory_total|process_rss)$")


def series_unit(path: str) -> str:
    """``%`` or ``GiB`` for a monitoring series whose unit is known, else ``""``."""
    if not path.startswith("monitoring/"):
        return ""
    if _PERCENT.search(path):
        return "%"
    if _GIB.search(path):
        return "GiB"
    return ""
