"""Downloads never write outside the destination, whatever file names the server holds or sends."""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

import msgpack
from faultproxy import FaultProxy


def _files_under(root: Path) -> set[Path]:
    """Files under ``root``, but not in the client's own queue folder (RUNSTORE_HOME is in tmp_path)."""
    return {p for p in root.rglob("*") if p.is_file() and "rshome" not in p.relative_to(root).parts}


def _log_files(run, tmp_path: Path) -> dict[str, Path]:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"A")
    (source / "sub" / "b.txt").write_bytes(b"B")
    (tmp_path / "weights.bin").write_bytes(b"W")
    run["ckpt"].upload_files(str(source))
    run["model"].upload(str(tmp_path / "weights.bin"))
    assert run.wait(60)
    return {"a": source / "a.txt", "b": source / "sub" / "b.txt"}


def _store_hostile_names(server, run_name: str) -> None:
    """What an older server accepted, written straight into the server's database."""
    with sqlite3.connect(server.root / "db.sqlite3") as db:
        attrs = {
            path: pk
            for pk, path in db.execute(
                "SELECT a.id, a.path FROM runs_attribute a JOIN runs_run r ON r.id = a.run_id WHERE r.name = ?",
                (run_name,),
            )
        }
        db.execute(
            "UPDATE runs_fileentry SET relpath = '../../escaped.txt' WHERE attribute_id = ? AND relpath = 'a.txt'",
            (attrs["ckpt"],),
        )
        db.execute(
            "UPDATE runs_fileentry SET relpath = '/tmp/abs-escape.txt' WHERE attribute_id = ? AND relpath = 'sub/b.txt'",
            (attrs["ckpt"],),
        )
        db.execute("UPDATE runs_fileentry SET name = '../../evil.bin' WHERE attribute_id = ?", (attrs["model"],))


def test_download_never_writes_outside_destination(connect, server, tmp_path):
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    run = connect(name=name)
    _log_files(run, tmp_path)
    _store_hostile_names(server, name)
    work = tmp_path / "work"
    dest = work / "a" / "b" / "dest"
    dest.mkdir(parents=True)
    before = _files_under(tmp_path)
    root = run["ckpt"].download(str(dest))
    model = run["model"].download(str(dest) + "/")
    written = _files_under(tmp_path) - before
    assert written and all(dest.resolve() in p.resolve().parents for p in written), written
    assert not Path("/tmp/abs-escape.txt").exists() and not (work / "a" / "escaped.txt").exists()
    assert root == dest and model.parent == dest and model.read_bytes() == b"W"
    assert sorted(p.read_bytes() for p in written) == [b"A", b"B", b"W"]  # still readable, under safe names
    run.stop()


def _hostile_listing(path: str, body: bytes) -> bytes:
    """A server that answers file lists with names that climb out of the destination."""
    if "/files?" not in path:
        return body
    listing = msgpack.unpackb(body, raw=False)
    for entry in listing["files"]:
        if entry["relpath"] == "a.txt":
            entry["relpath"] = "../../escaped.txt"
        elif entry["relpath"] == "sub/b.txt":
            entry["relpath"] = "/tmp/abs-escape.txt"
        entry["name"] = "../../evil.bin" if listing["type"] == "file" else entry["name"]
    return msgpack.packb(listing, use_bin_type=True)


def test_client_refuses_names_that_climb_out_and_counts_them_as_errors(connect, server, tmp_path):
    with FaultProxy(server.url, rewrite=_hostile_listing) as proxy:
        run = connect(url=proxy.url)
        _log_files(run, tmp_path)
        dest = tmp_path / "work" / "a" / "b" / "dest"
        dest.mkdir(parents=True)
        before = _files_under(tmp_path)
        assert run.status()["errors"] == 0
        root = run["ckpt"].download(str(dest))
        assert root == dest and _files_under(tmp_path) == before  # both entries refused, nothing written
        model = run["model"].download(str(dest))
        assert model == dest / "evil.bin" and model.read_bytes() == b"W"
        assert not (tmp_path / "work" / "evil.bin").exists() and not Path("/tmp/abs-escape.txt").exists()
        status = run.status()
        assert status["errors"] == 3 and "evil.bin" in status["last_error"], status
        run.stop()


def test_download_does_not_follow_a_symlink_out_of_the_destination(connect, tmp_path):
    run = connect()
    _log_files(run, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "sub")
    run["ckpt"].download(str(dest))
    assert (dest / "a.txt").read_bytes() == b"A"
    assert not (outside / "b.txt").exists()
    assert run.status()["errors"] == 1
    run.stop()
