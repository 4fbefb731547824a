class ApiError(Exception):
    """An error the API reports as JSON: ``{"error": {"status", "code", "message", ...}}``."""

    def __init__(self, status: int, code: str, message: str, **details):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = {k: v for k, v in details.items() if v is not None}

    def as_dict(self) -> dict:
        return {"status": self.status, "code": self.code, "message": self.message, **self.details}


class BatchError(ApiError):
    """A batch operation was rejected; names the operation index, the path and the field."""

    def __init__(self, status, code, message, *, op_index=None, path=None, field=None, **details):
        if op_index is not None:
            prefix = f"ops[{op_index}]"
            field = f"{prefix}.{field}" if field else prefix
            where = f"operation {op_index}" + (f" ({path!r})" if path else "")
            message = f"{where}: {message}"
        super().__init__(status, code, message, op_index=op_index, path=path, field=field, **details)
