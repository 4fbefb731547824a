import hashlib

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from .errors import ApiError

# Room for the multipart framing (boundaries, part headers, the sha256 field) around the file.
MULTIPART_OVERHEAD = 64 * 1024


def _too_large(what: str) -> ApiError:
    limit = settings.RUNSTORE_MAX_UPLOAD_BYTES
    return ApiError(
        413,
        "upload_too_large",
        f"file: {what} is above the upload limit of {limit} bytes (RUNSTORE_MAX_UPLOAD_BYTES)",
        field="file",
        limit=limit,
    )


class HashingUploadHandler(TemporaryFileUploadHandler):
    """Streams each uploaded file to a temporary file and hashes it on the way (SHA-256).

    Refuses a body above RUNSTORE_MAX_UPLOAD_BYTES before reading it when its Content-Length says so,
    and otherwise as soon as the file's bytes pass the limit (a body without a Content-Length)."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > settings.RUNSTORE_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
            raise _too_large(f"the request body of {content_length} bytes")
        return super().handle_raw_input(input_data, META, content_length, boundary, encoding)

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.sha256 = hashlib.sha256()
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > settings.RUNSTORE_MAX_UPLOAD_BYTES:
            self.file.close()  # a temporary file: closing deletes it
            raise _too_large(f"the file {self.file_name or ''!r}")
        self.sha256.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        upload = super().file_complete(file_size)
        upload.sha256 = self.sha256.hexdigest()
        return upload
