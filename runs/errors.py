from tracker.api.errors import ApiError

__all__ = ["ApiError", "BatchError"]


class BatchError(ApiError):
    """A batch operation was rejected; names the operation index, the path and the field."""

    def __init__(self, status, code, message, *, op_index=None, path=None, field=None, **details):
        if op_index is not None:
            prefix = f"ops[{op_index}]"
            field = f"{prefix}.{field}" if field else prefix
            where = f"operation {op_index}" + (f" ({path!r})" if path else "")
            message = f"{where}: {message}"
        super().__init__(status, code, message, op_index=op_index, path=path, field=field, **details)
