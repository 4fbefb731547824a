"""Blob storage: content-addressed files in the ``blobs`` storage (local folder or S3)."""

from django.core.files.storage import storages


def blob_storage():
    return storages["blobs"]


def save_blob(key: str, fileobj) -> None:
    storage = blob_storage()
    if not storage.exists(key):
        fileobj.seek(0)
        storage.save(key, fileobj)


def open_blob(key: str):
    return blob_storage().open(key, "rb")
