"""Blob storage: content-addressed files in the ``blobs`` storage (local folder or S3).

Keys: ``blobs/ab/cd/<sha256>`` for contents, ``previews/ab/<sha256>/<kind>`` for
derived files, ``staging/<uuid>`` for direct uploads not verified yet and
``exports/<uuid>.zip`` for archives. Reads stream in chunks from either store
(never the whole object in memory); on S3, big transfers can bypass the web
process through presigned URLs.
"""

import errno
import hashlib
import io
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.files.storage import storages

CHUNK = 1024 * 1024


def blob_storage():
    return storages["blobs"]


def is_s3(storage=None) -> bool:
    storage = storage or blob_storage()
    return hasattr(storage, "bucket") and hasattr(storage, "connection")


def preview_key(sha256: str, kind: str) -> str:
    return f"previews/{sha256[:2]}/{sha256}/{kind}"


class StorageFull(OSError):
    """The blob store has no room for a file (the disk or a quota is full); nothing of it was kept."""


class StorageUnavailable(OSError):
    """The blob store did not take a file for now (S3 unreachable or failing): worth a retry."""


def save_blob(key: str, fileobj) -> None:
    """Store ``fileobj`` at ``key`` unless it is there. A key holds whole contents or nothing: on a local
    folder the bytes go to a temporary name beside it, renamed into place once complete (a write cut
    by a full disk leaves no truncated blob that ``exists`` would then vouch for); an S3 put is whole."""
    storage = blob_storage()
    if is_s3(storage):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if not storage.exists(key):
                fileobj.seek(0)
                storage.save(key, fileobj)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(errno.EIO, f"the S3 store refused the file: {exc}") from exc
        return
    if storage.exists(key):
        return
    fileobj.seek(0)
    temporary = f"{key}.part-{uuid.uuid4().hex}"
    try:
        saved = storage.save(temporary, fileobj)
        os.replace(storage.path(saved), storage.path(key))
    except OSError as exc:
        try:
            os.unlink(storage.path(temporary))
        except OSError:
            pass
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(exc.errno, "the blob store is full") from exc
        raise


def save_bytes(key: str, data: bytes) -> None:
    storage = blob_storage()
    if storage.exists(key):
        storage.delete(key)
    storage.save(key, io.BytesIO(data))


def delete_key(key: str) -> None:
    storage = blob_storage()
    if storage.exists(key):
        storage.delete(key)


class _S3Reader(io.RawIOBase):
    """A seekable, read-only stream over one S3 object: a ranged GET from the current offset.

    django-storages' S3File would download the whole object first; this reads
    it in network-sized pieces so memory does not grow with the file.
    """

    def __init__(self, storage, key: str):
        self._obj = storage.bucket.Object(storage._normalize_name(key))
        self._pos = 0
        self._body = None
        self._size: int | None = None

    def readable(self):
        return True

    def seekable(self):
        return True

    @property
    def size(self) -> int:
        if self._size is None:
            self._size = int(self._obj.content_length)
        return self._size

    def seek(self, offset, whence=os.SEEK_SET):
        new = {os.SEEK_SET: offset, os.SEEK_CUR: self._pos + offset, os.SEEK_END: self.size + offset}[whence]
        if new != self._pos:
            self._close_body()
            self._pos = new
        return self._pos

    def tell(self):
        return self._pos

    def read(self, size=-1):
        if self._body is None:
            if self._size is not None and self._pos >= self._size:
                return b""
            try:
                self._body = self._obj.get(Range=f"bytes={self._pos}-")["Body"]
            except self._obj.meta.client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    return b""
                raise
        data = self._body.read(None if size is None or size < 0 else size)
        self._pos += len(data)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _close_body(self):
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self):
        self._close_body()
        super().close()


def open_blob(key: str):
    storage = blob_storage()
    if is_s3(storage):
        return _S3Reader(storage, key)
    return storage.open(key, "rb")


def iter_blob(key: str, chunk: int = CHUNK):
    with open_blob(key) as stream:
        while True:
            data = stream.read(chunk)
            if not data:
                return
            yield data


def hash_blob(key: str) -> tuple[str, int, bytes]:
    """(sha256 hex, size, first 64 KiB) of a stored object, read as a stream."""
    digest, size, head = hashlib.sha256(), 0, b""
    for data in iter_blob(key):
        if len(head) < 65536:
            head += data[: 65536 - len(head)]
        digest.update(data)
        size += len(data)
    return digest.hexdigest(), size, head


# --- S3 only: presigned URLs and server-side moves ------------------------------


def _client(storage):
    return storage.bucket.meta.client


def _key(storage, key):
    return storage._normalize_name(key)


def presigned_get(key: str, *, filename: str, content_type: str, inline: bool = False) -> str:
    from django.utils.http import content_disposition_header

    storage = blob_storage()
    return storage.url(
        key,
        parameters={
            "ResponseContentDisposition": content_disposition_header(not inline, filename or "file"),
            "ResponseContentType": content_type,
        },
        expire=url_expiry(),
    )


def url_expiry() -> int:
    storage = blob_storage()
    return int(getattr(storage, "querystring_expire", 300))


def presigned_put(key: str) -> str:
    storage = blob_storage()
    return _client(storage).generate_presigned_url(
        "put_object", Params={"Bucket": storage.bucket_name, "Key": _key(storage, key)}, ExpiresIn=url_expiry()
    )


def start_multipart(key: str, size: int) -> tuple[str, int, list[str]]:
    """Create a multipart upload; returns (upload id, part size, presigned URL per part)."""
    storage = blob_storage()
    client = _client(storage)
    part_size = max(settings.RUNSTORE_MULTIPART_CHUNK, -(-size // 10_000))
    upload_id = client.create_multipart_upload(Bucket=storage.bucket_name, Key=_key(storage, key))["UploadId"]
    urls = [
        client.generate_presigned_url(
            "upload_part",
            Params={"Bucket": storage.bucket_name, "Key": _key(storage, key), "UploadId": upload_id, "PartNumber": n},
            ExpiresIn=max(url_expiry(), 3600),
        )
        for n in range(1, -(-size // part_size) + 1)
    ]
    return upload_id, part_size, urls


def complete_multipart(key: str, upload_id: str, parts: list[dict]) -> None:
    storage = blob_storage()
    _client(storage).complete_multipart_upload(
        Bucket=storage.bucket_name,
        Key=_key(storage, key),
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": p["part_number"], "ETag": p["etag"]} for p in parts]},
    )


def abort_multipart(key: str, upload_id: str) -> None:
    storage = blob_storage()
    try:
        _client(storage).abort_multipart_upload(Bucket=storage.bucket_name, Key=_key(storage, key), UploadId=upload_id)
    except Exception:  # already completed or aborted
        pass


def move(source: str, target: str) -> None:
    """Server-side copy (multipart for big objects) then delete, on S3; a rename on a folder."""
    storage = blob_storage()
    if storage.exists(target):
        storage.delete(source)
        return
    if is_s3(storage):
        options: dict[str, Any] = settings.STORAGES["blobs"].get("OPTIONS", {})
        _client(storage).copy(
            {"Bucket": storage.bucket_name, "Key": _key(storage, source)},
            storage.bucket_name,
            _key(storage, target),
            Config=options.get("transfer_config"),
        )
        storage.delete(source)
    else:
        with storage.open(source, "rb") as stream:
            storage.save(target, stream)
        storage.delete(source)


def list_keys(prefix: str):
    """``(key, size, modified)`` of every object under ``prefix`` (a folder name, no trailing slash)."""
    storage = blob_storage()
    if is_s3(storage):
        base = _key(storage, prefix) + "/"
        location = _key(storage, "")
        strip = len(location.rstrip("/") + "/") if location else 0
        for obj in storage.bucket.objects.filter(Prefix=base):
            yield obj.key[strip:], obj.size, obj.last_modified
        return
    root = storage.path(prefix)
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            stat = os.stat(path)
            key = os.path.relpath(path, storage.location).replace(os.sep, "/")
            yield key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, tz=UTC)
