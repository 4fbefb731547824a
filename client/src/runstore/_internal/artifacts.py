"""Artifact versions for ``track_files``: the file list of a directory, a file or an S3 prefix.

Local files are hashed (SHA-256, streamed) by a thread pool, and every hash is kept in a cache keyed
on ``(path, size, mtime_ns, inode)``: a file that did not change is not read again. The cache is a
SQLite file under ``RUNSTORE_HOME`` (``hash-cache.sqlite3``), in WAL mode, which several processes
may read and write at once; when it cannot be opened the files are hashed without it.

``s3://bucket/prefix`` locations are listed with boto3 (keys, sizes, ETags), never downloaded; the
S3 endpoint comes from ``RUNSTORE_S3_ENDPOINT_URL`` or boto3's own configuration (``AWS_*``).

A version's hash is the hash of its one file, or SHA-256 over ``relpath\\0hash\\0size\\n`` of its
files in path order: the server computes uploaded file sets' versions the same way, so a tracked
copy of an uploaded model is the same version.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
MAX_FILES = 100_000  # the server's default RUNSTORE_MAX_ARTIFACT_FILES
CACHE_NAME = "hash-cache.sqlite3"

Entry = tuple[str, str, int]  # relative path, hash, size


def workers() -> int:
    return max(2, min(16, (os.cpu_count() or 2) * 2))


def version_hash(entries: Iterable[Entry]) -> str:
    rows = sorted(entries)
    if len(rows) == 1:
        return rows[0][1]
    overall = hashlib.sha256()
    for relpath, digest, size in rows:
        overall.update(f"{relpath}\0{digest}\0{size}\n".encode())
    return overall.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """SHA-256 of files by ``(path, size, mtime_ns, inode)`` in a SQLite file; safe across threads and processes."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS hashes (path TEXT NOT NULL, size INTEGER NOT NULL,"
                " mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, sha256 TEXT NOT NULL,"
                " PRIMARY KEY (path, size, mtime_ns, inode))"
            )
            self._db = db
        return self._db

    def get_many(self, keys: list[tuple[str, int, int, int]]) -> dict[tuple[str, int, int, int], str]:
        found: dict[tuple[str, int, int, int], str] = {}
        with self._lock:
            db = self._connect()
            for start in range(0, len(keys), 400):
                chunk = keys[start : start + 400]
                rows = db.execute(
                    "SELECT path, size, mtime_ns, inode, sha256 FROM hashes WHERE path IN"
                    f" ({','.join('?' * len(chunk))})",
                    [k[0] for k in chunk],
                ).fetchall()
                wanted = set(chunk)
                for path, size, mtime_ns, inode, digest in rows:
                    key = (path, size, mtime_ns, inode)
                    if key in wanted:
                        found[key] = digest
        return found

    def put_many(self, rows: list[tuple[tuple[str, int, int, int], str]]) -> None:
        if not rows:
            return
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                # one row per path: a changed file replaces its old hash
                db.executemany("DELETE FROM hashes WHERE path = ?", [(key[0],) for key, _ in rows])
                db.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?)", [(*k, d) for k, d in rows])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def cache_for(home: Path, on_error: Callable[[str], None]) -> HashCache | None:
    cache = HashCache(home / CACHE_NAME)
    try:
        cache._connect()
    except (sqlite3.Error, OSError) as exc:
        on_error(f"runstore: track_files: the hash cache {cache.path} cannot be used ({exc}); hashing without it")
        return None
    return cache


def list_local(root: Path) -> list[tuple[str, Path]]:
    """Every file under ``root`` (or ``root`` itself) with its path relative to the directory, in path order."""
    if not root.is_dir():
        return [(root.name, root)]
    files = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        base = Path(folder)
        for name in names:
            path = base / name
            if path.is_file():
                files.append((path.relative_to(root).as_posix(), path))
    files.sort()
    return files


def hash_local(
    root: Path, cache: HashCache | None, on_error: Callable[[str], None], max_workers: int | None = None
) -> list[Entry]:
    """Relative path, SHA-256 and size of every file under ``root``; unchanged files come from ``cache``."""
    files = list_local(root)
    stats: list[tuple[str, Path, tuple[str, int, int, int]]] = []
    for relpath, path in files:
        try:
            st = path.stat()
        except OSError as exc:
            on_error(f"runstore: track_files: cannot read {path}: {exc}")
            continue
        stats.append((relpath, path, (str(path), st.st_size, st.st_mtime_ns, st.st_ino)))
    known: dict[tuple[str, int, int, int], str] = {}
    if cache is not None:
        try:
            known = cache.get_many([key for _, _, key in stats])
        except sqlite3.Error as exc:
            on_error(f"runstore: track_files: the hash cache cannot be read ({exc})")
    missing = [(relpath, path, key) for relpath, path, key in stats if key not in known]

    def work(item: tuple[str, Path, tuple[str, int, int, int]]) -> tuple[tuple[str, int, int, int], str | None]:
        try:
            return item[2], sha256_of(item[1])
        except OSError as exc:
            on_error(f"runstore: track_files: cannot read {item[1]}: {exc}")
            return item[2], None

    fresh: list[tuple[tuple[str, int, int, int], str]] = []
    if len(missing) > 1:
        with ThreadPoolExecutor(max_workers=max_workers or workers(), thread_name_prefix="runstore-hash") as pool:
            results = list(pool.map(work, missing))
    else:
        results = [work(item) for item in missing]
    for key, digest in results:
        if digest is not None:
            known[key] = digest
            fresh.append((key, digest))
    if cache is not None and fresh:
        try:
            cache.put_many(fresh)
        except sqlite3.Error as exc:
            on_error(f"runstore: track_files: the hash cache cannot be written ({exc})")
    return [(relpath, known[key], key[1]) for relpath, _, key in stats if key in known]


def parse_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri!r}: an S3 location is s3://bucket/prefix")
    return bucket, prefix


def s3_client() -> Any:
    import boto3  # optional: only S3 locations need it

    return boto3.client("s3", endpoint_url=os.environ.get("RUNSTORE_S3_ENDPOINT_URL") or None)


def list_s3(uri: str, client: Any = None) -> list[Entry]:
    """Key (relative to the prefix), ETag and size of every object under ``s3://bucket/prefix``."""
    bucket, prefix = parse_s3(uri)
    client = client or s3_client()
    entries: list[Entry] = []
    base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue  # a folder marker
            if key == prefix:  # the prefix names one object
                relpath = key.rsplit("/", 1)[-1]
            elif key.startswith(base):
                relpath = key[len(base) :]
            else:
                continue  # s3://b/data also matches data2/...: not under the folder
            entries.append((relpath, "etag:" + str(item.get("ETag", "")).strip('"'), int(item["Size"])))
            if len(entries) > MAX_FILES:
                return sorted(entries)
    return sorted(entries)
