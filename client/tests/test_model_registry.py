"""The model registry from the client, against a real server: register a logged file and file set,
promote, and download the production version byte for byte."""

import pytest

import runstore


def test_register_promote_and_download_the_production_model(connect, server, project, tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"\x00weights" * 5000)
    folder = tmp_path / "export"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"m" * 3000)
    (folder / "tokenizer" / "vocab.txt").write_bytes(b"a\nb\n")
    run = connect()
    run["eval/acc"] = 0.91
    run["model/weights"].upload(str(weights))
    run["model/export"].upload_files(str(folder))
    name = f"clf-{project.split('/')[1]}"
    first = runstore.register_model(run, "model/weights", name=name, description="baseline")
    assert first["version"] == 1 and first["stage"] == "none" and first["model"] == name
    assert first["run"]["metrics"] == {"eval/acc": 0.91}
    second = runstore.register_model(run, "model/export", name=name, stage="staging")
    assert second["version"] == 2 and second["stage"] == "staging"
    run.stop()
    options = {"workspace": project.split("/")[0], "api_token": server.token, "url": server.url}

    with pytest.raises(runstore.NotFoundError):
        runstore.download_model(name, tmp_path / "none", **options)  # nothing in production yet
    promoted = runstore.set_model_stage(name, 1, "production", **options)
    assert promoted["stage"] == "production" and promoted["stage_changed_by"] == "alice"
    path = runstore.download_model(name, str(tmp_path / "out") + "/", **options)
    assert path == tmp_path / "out" / "model.pt" and path.read_bytes() == weights.read_bytes()

    runstore.set_model_stage(name, 2, "production", archive_existing=True, **options)
    assert runstore.get_model_version(name, version=1, **options)["stage"] == "archived"
    restored = runstore.download_model(name, tmp_path / "prod", **options)
    assert (restored / "model.bin").read_bytes() == b"m" * 3000
    assert (restored / "tokenizer" / "vocab.txt").read_bytes() == b"a\nb\n"
    older = runstore.download_model(name, tmp_path / "v1.pt", version=1, **options)
    assert older.read_bytes() == weights.read_bytes()


def test_explicit_registry_calls_raise_clear_errors(connect, server, project, tmp_path):
    run = connect()
    run["eval/acc"] = 0.5
    with pytest.raises(runstore.NotFoundError) as missing:
        runstore.register_model(run, "model/nothing", name="m")
    assert missing.value.status == 404 and missing.value.details["field"] == "path"
    with pytest.raises(runstore.ApiError) as wrong:
        runstore.register_model(run, "eval/acc", name="m")
    assert wrong.value.status == 409 and wrong.value.details["field"] == "path"
    with pytest.raises(runstore.ConfigurationError):
        runstore.register_model(run, "eval/acc", name="m", stage="live")
    run.stop()
    options = {"workspace": project.split("/")[0], "api_token": server.token, "url": server.url}
    with pytest.raises(runstore.NotFoundError):
        runstore.set_model_stage("no-such-model", 1, "production", **options)
