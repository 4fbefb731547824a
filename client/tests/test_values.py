"""Values accepted (and refused, at the call, in every mode) by assign/append/extend."""

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import runstore

QUIET = {
    "capture_stdout": False,
    "capture_stderr": False,
    "capture_hardware_metrics": False,
    "capture_source": False,
    "capture_environment": False,
}


@pytest.fixture()
def debug_run():
    run = runstore.init_run(project="alice/vision", mode="debug", **QUIET)
    yield run
    run.stop()


def test_dict_assign_creates_a_namespace(debug_run):
    debug_run["parameters"] = {"lr": 0.01, "optimizer": {"name": "adam", "betas": [0.9, 0.999]}, "use_bn": True}
    assert debug_run["parameters"].fetch() == {
        "lr": 0.01,
        "optimizer": {"name": "adam", "betas": "[0.9, 0.999]"},
        "use_bn": True,
    }
    assert debug_run["parameters/optimizer/name"].fetch() == "adam"


def test_numpy_pandas_datetime_path_and_bool_values_are_accepted(debug_run):
    debug_run["a"] = np.float32(0.5)
    debug_run["b"] = np.int64(3)
    debug_run["c"] = np.bool_(True)
    debug_run["d"] = np.array(2.5)
    debug_run["e"] = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    debug_run["f"] = Path("/data/train")
    debug_run["g"] = pd.Timestamp("2024-01-02T03:04:05Z")
    debug_run["h"] = {"tags", "set"}
    assert debug_run["a"].fetch() == 0.5 and debug_run["b"].fetch() == 3 and debug_run["c"].fetch() is True
    assert debug_run["d"].fetch() == 2.5
    assert debug_run["e"].fetch() == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert debug_run["f"].fetch() == "/data/train"
    assert debug_run["g"].fetch() == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert debug_run["h"].fetch() == {"tags", "set"}


def test_series_accept_numpy_scalars_arrays_and_series(debug_run):
    debug_run["loss"].append(np.float64(0.5))
    debug_run["loss"].append(0.4, step=7, timestamp=1700000000.0)
    debug_run["loss"].extend(np.array([0.3, 0.2]), steps=[8, 9])
    debug_run["loss"].extend(pd.Series([0.1]))
    values = debug_run["loss"].fetch_values()
    assert list(values["step"]) == [0, 7, 8, 9, 10]
    assert list(values["value"]) == pytest.approx([0.5, 0.4, 0.3, 0.2, 0.1])
    debug_run["notes"].append("epoch 1 done")
    assert debug_run["notes"].fetch() == "epoch 1 done"


def test_dict_append_logs_every_key(debug_run):
    debug_run["metrics"].append({"loss": 0.5, "acc": 0.9})
    assert debug_run["metrics"].fetch() == {"loss": 0.5, "acc": 0.9}


@pytest.mark.parametrize("mode", ["debug", "offline", "async", "sync"])
def test_unsupported_values_fail_at_the_call_naming_the_path(mode, request):
    if mode in ("async", "sync"):
        run = request.getfixturevalue("connect")(mode=mode)
    else:
        run = runstore.init_run(project="alice/vision", mode=mode, **QUIET)
    with pytest.raises(TypeError, match=r"'params/bad'.*accepted"):
        run["params"] = {"ok": 1, "bad": object()}
    with pytest.raises(TypeError, match=r"'train/loss'.*accepted"):
        run["train/loss"].append(object())
    with pytest.raises(TypeError, match="'x'"):
        run["x"] = None
    with pytest.raises(TypeError, match="step of 'train/loss'"):
        run["train/loss"].append(1.0, step="seven")
    with pytest.raises(ValueError, match="empty segment"):
        run["a//b"] = 1
    with pytest.raises(ValueError, match="read-only"):
        run["sys/id"] = "X"
    run.stop()


def test_nothing_of_a_refused_dict_is_queued(debug_run):
    with pytest.raises(TypeError):
        debug_run["params"] = {"ok": 1, "bad": object()}
    assert not debug_run.exists("params/ok")


def test_steps_must_increase_in_extend(debug_run):
    with pytest.raises(ValueError, match="increase"):
        debug_run["x"].extend([1, 2], steps=[3, 3])


def test_images_from_numpy_pil_and_matplotlib(debug_run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    figure = plt.figure()
    plt.plot([1, 2, 3])
    for image in (np.random.rand(8, 8, 3), np.zeros((4, 4), dtype=np.uint8), Image.new("RGB", (3, 3)), figure):
        file = runstore.File.as_image(image)
        assert file.content is not None and file.content.startswith(b"\x89PNG")
        debug_run["samples"].append(file)
    plt.close(figure)
    with pytest.raises(TypeError, match="shape"):
        runstore.File.as_image(np.zeros((2, 2, 7)))


def test_audio_from_float_and_integer_samples_is_a_wav_of_their_rate(debug_run):
    import io
    import wave

    tone = np.sin(np.linspace(0, 440 * 2 * np.pi, 8000))
    for samples, channels in ((tone, 1), (np.stack([tone, -tone], axis=1), 2), ([0, 1000, -1000, 32767], 1)):
        file = runstore.File.as_audio(samples, 8000)
        assert file.mime_type == "audio/wav" and file.name == "audio.wav"
        with wave.open(io.BytesIO(file.content)) as sound:
            assert sound.getframerate() == 8000 and sound.getnchannels() == channels and sound.getsampwidth() == 2
            assert sound.getnframes() == len(samples)
        debug_run["audio/tone"].append(file)
    loud = runstore.File.as_audio(np.array([2.0, -2.0, np.nan]), 100)
    with wave.open(io.BytesIO(loud.content)) as sound:
        assert np.frombuffer(sound.readframes(3), "<i2").tolist() == [32767, -32767, 0]  # clipped, NaN silent
    with pytest.raises(ValueError, match="sample_rate"):
        runstore.File.as_audio(tone, 0)
    with pytest.raises(TypeError, match="shape"):
        runstore.File.as_audio(np.zeros((2, 2, 2)), 8000)


def test_read_only_debug_like_behaviour_of_writes_after_stop(debug_run, caplog):
    debug_run.stop()
    debug_run["x"] = 1  # ignored with a warning; never raises into training code
    assert "stopped" in caplog.text
