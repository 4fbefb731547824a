"""Videos: metadata and a poster frame read with PyAV, stored next to the original, served by the API.

The videos are encoded here with PyAV (the FFmpeg in its wheel has libx264 and libvpx), so every
case is a real file; each runs on the local folder and on the S3 store.
"""

import io
import tempfile
from pathlib import Path

import av
import pytest
from django.core.files.storage import storages
from PIL import Image

from runs import processing, storage
from runs.models import BlobInfo, BlobPreview, BlobState
from runs.usage import compute_usage

from .conftest import run_url
from .roles import role_matrix
from .test_tasks import attach

FPS = 24


def shade(index: int) -> tuple[int, int, int]:
    """Frame ``index`` is one flat colour, so a poster tells which frame it was taken from."""
    level = min(255, index * 5)
    return (level, 40, 255 - level)


def encode(fmt, codec, size=(64, 48), seconds=2, rotation=None, frame_image=None, **container_options):
    options = {"deadline": "realtime", "cpu-used": "8"} if codec.startswith("libvpx") else {}
    with tempfile.TemporaryDirectory() as folder:  # a file: faststart rewrites it at the end
        path = Path(folder) / f"clip.{fmt}"
        _encode(path, fmt, codec, size, seconds, rotation, frame_image, options, container_options)
        return path.read_bytes()


def _encode(path, fmt, codec, size, seconds, rotation, frame_image, options, container_options):
    with av.open(str(path), mode="w", format=fmt, options=container_options) as container:
        stream = container.add_stream(codec, rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(seconds * FPS):
            image = frame_image(size) if frame_image else Image.new("RGB", size, shade(index))
            container.mux(stream.encode(av.VideoFrame.from_image(image)))
        container.mux(stream.encode())


def fetch_poster(client, run, path):
    response = client.get(run_url(run, "files/preview"), {"path": path, "kind": "poster"})
    assert response.status_code == 200, response.content
    return response, Image.open(io.BytesIO(b"".join(response.streaming_content)))


def near(color, expected, tolerance=24):
    return all(abs(a - b) <= tolerance for a, b in zip(color, expected, strict=True))


@pytest.mark.parametrize(
    "name,fmt,codec,size,mime,poster_size",
    [
        ("clip.mp4", "mp4", "libx264", (64, 48), "video/mp4", (64, 48)),
        ("clip.webm", "webm", "libvpx-vp9", (640, 360), "video/webm", (512, 288)),
        ("clip.mov", "mov", "mpeg4", (64, 48), "video/quicktime", (64, 48)),
    ],
)
def test_video_gets_a_poster_and_its_metadata(owner_api, run, blob_store, name, fmt, codec, size, mime, poster_size):
    sha = attach(owner_api, run, name, encode(fmt, codec, size), "media/clip")
    before = owner_api.get(run_url(run, "files/preview"), {"path": "media/clip", "kind": "poster"})
    assert before.status_code == 404 and before.json()["error"]["code"] == "preview_not_ready"

    assert processing.process_blob(sha) == BlobState.READY
    info = BlobInfo.objects.get(blob_id=sha)
    assert info.detected_mime_type == mime and info.error == ""
    meta = info.metadata
    assert (meta["width"], meta["height"]) == size and meta["duration_seconds"] == pytest.approx(2.0, abs=0.05)
    assert meta["codec"] == {"libx264": "h264", "libvpx-vp9": "vp9"}.get(codec, codec) and meta["frame_rate"] == FPS
    poster = BlobPreview.objects.get(blob_id=sha, kind="poster")
    assert poster.storage_key == storage.preview_key(sha, "poster") and poster.mime_type == "image/jpeg"
    assert storages["blobs"].exists(poster.storage_key)

    response, image = fetch_poster(owner_api, run, "media/clip")
    assert response["Content-Type"] == "image/jpeg" and 'filename="clip' in response["Content-Disposition"]
    assert image.format == "JPEG" and image.size == poster_size
    # taken about a second in (frame 24), not the first frame, which is often black
    assert near(image.getpixel((poster_size[0] // 2, poster_size[1] // 2)), shade(FPS))
    body = owner_api.get(run_url(run, "files/info"), {"path": "media/clip"}).json()
    assert body["processing"]["previews"] == ["poster"] and body["processing"]["metadata"]["codec"] == meta["codec"]


def test_poster_is_turned_upright_like_players_do(owner_api, run, blob_store):
    def left_white_right_black(size):
        image = Image.new("RGB", size, (0, 0, 0))
        image.paste((255, 255, 255), (0, 0, size[0] // 2, size[1]))
        return image

    clip = encode("mp4", "libx264", (64, 48), seconds=1, rotation=90, frame_image=left_white_right_black)
    sha = attach(owner_api, run, "phone.mp4", clip, "media/phone")
    processing.process_blob(sha)
    meta = BlobInfo.objects.get(blob_id=sha).metadata
    assert (meta["width"], meta["height"], meta["rotation"]) == (64, 48, 90)
    _, image = fetch_poster(owner_api, run, "media/phone")
    # turned a quarter counter-clockwise: the right (black) half is now on top
    assert image.size == (48, 64)
    assert near(image.getpixel((24, 8)), (0, 0, 0), 40) and near(image.getpixel((24, 56)), (255, 255, 255), 40)


def test_a_cut_off_mp4_records_an_error_without_raising(owner_api, run, blob_store):
    clip = encode("mp4", "libx264")  # its index (moov) is written last, so the cut loses it
    sha = attach(owner_api, run, "cut.mp4", clip[: len(clip) // 2], "media/cut")
    assert processing.process_blob(sha) == BlobState.READY
    info = BlobInfo.objects.get(blob_id=sha)
    assert info.detected_mime_type == "video/mp4" and info.metadata["verified"]
    assert info.error.startswith("preview failed: unreadable video")
    assert not BlobPreview.objects.filter(blob_id=sha).exists()
    body = owner_api.get(run_url(run, "files/info"), {"path": "media/cut"}).json()
    assert body["processing"]["error"] == info.error and body["processing"]["previews"] == []


def test_a_cut_off_video_keeps_what_could_be_read(owner_api, run, blob_store):
    mp4 = encode("mp4", "libx264", movflags="faststart")  # index first: a cut keeps it
    webm = encode("webm", "libvpx-vp9")
    for name, clip, codec in (("cut.mp4", mp4, "h264"), ("cut.webm", webm, "vp9")):
        sha = attach(owner_api, run, name, clip[: len(clip) * 8 // 10], f"media/{name}")
        assert processing.process_blob(sha) == BlobState.READY
        meta = BlobInfo.objects.get(blob_id=sha).metadata
        assert meta["codec"] == codec and (meta["width"], meta["height"]) == (64, 48), name
        # the poster is the frame at a second, or the last one there was before the cut
        _, image = fetch_poster(owner_api, run, f"media/{name}")
        assert image.size == (64, 48)
    # cut inside the first frame: the header is all there is
    sha = attach(owner_api, run, "stub.mp4", mp4[: len(mp4) // 2], "media/stub")
    assert processing.process_blob(sha) == BlobState.READY
    info = BlobInfo.objects.get(blob_id=sha)
    assert info.metadata["codec"] == "h264" and info.metadata["duration_seconds"] == pytest.approx(2.0, abs=0.05)
    assert info.error.startswith("preview failed:") and not BlobPreview.objects.filter(blob_id=sha).exists()


@pytest.mark.parametrize(
    "content",
    [
        b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01" + b"\xff" * 4000,  # an EBML (WebM) header, then rubbish
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(4000),  # an MP4 type box and nothing else
    ],
)
def test_a_corrupt_video_records_an_error_without_raising(owner_api, run, blob_store, content):
    sha = attach(owner_api, run, "broken.video", content, "media/broken")
    assert processing.process_blob(sha) == BlobState.READY
    info = BlobInfo.objects.get(blob_id=sha)
    assert info.detected_mime_type.startswith("video/") and info.error.startswith("preview failed:")
    assert not BlobPreview.objects.filter(blob_id=sha).exists()


def test_processing_a_video_twice_stores_one_poster(owner_api, run, project, blob_store):
    sha = attach(owner_api, run, "clip.webm", encode("webm", "libvpx-vp9"), "media/clip")
    key = storage.preview_key(sha, "poster")
    storage.save_bytes(key, b"\xff\xd8 half a JPEG")  # left by a worker killed while storing it
    processing.process_blob(sha)
    first = BlobPreview.objects.get(blob_id=sha, kind="poster")
    meta = BlobInfo.objects.get(blob_id=sha).metadata
    processing.process_blob(sha)
    assert BlobPreview.objects.filter(blob_id=sha).count() == 1 and BlobInfo.objects.filter(blob_id=sha).count() == 1
    again = BlobPreview.objects.get(blob_id=sha, kind="poster")
    assert (again.pk, again.storage_key, again.size) == (first.pk, key, first.size)
    assert BlobInfo.objects.get(blob_id=sha).metadata == meta
    assert storages["blobs"].listdir(key.rsplit("/", 1)[0])[1] == ["poster"]
    assert compute_usage(project.pk)["preview_bytes"] == again.size
    _, image = fetch_poster(owner_api, run, "media/clip")
    assert image.size == (64, 48)


def test_posters_follow_run_visibility(world, run, owner_api):
    sha = attach(owner_api, run, "clip.mp4", encode("mp4", "libx264", seconds=1), "media/clip")
    processing.process_blob(sha)
    role_matrix(
        world,
        lambda client: client.get(run_url(run, "files/preview"), {"path": "media/clip", "kind": "poster"}),
        {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 401},
    )


def test_an_unknown_preview_kind_is_refused(owner_api, run):
    response = owner_api.get(run_url(run, "files/preview"), {"path": "media/clip", "kind": "gif"})
    assert response.status_code == 400 and "poster" in response.json()["error"]["message"]


def test_video_types_are_sniffed_from_their_headers():
    assert processing.sniff(encode("webm", "libvpx-vp9", seconds=1)[:4096]) == "video/webm"
    assert processing.sniff(encode("matroska", "libx264", seconds=1)[:4096]) == "video/x-matroska"
    assert processing.sniff(encode("avi", "mpeg4", seconds=1)[:4096]) == "video/x-msvideo"
    assert processing.sniff(encode("mov", "mpeg4", seconds=1)[:4096]) == "video/quicktime"
    assert processing.sniff(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf") == "image/avif"
    assert processing.sniff(b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A isom") == "audio/mp4"


def test_the_run_page_player_shows_the_poster(owner, run, project, blob_store):
    from django.test import Client

    from .conftest import client_for

    api = client_for(owner)
    sha = attach(api, run, "clip.mp4", encode("mp4", "libx264"), "media/clip")
    browser = Client()
    browser.force_login(owner)
    url = f"/w/{project.workspace.slug}/{project.slug}/runs/{run.human_id}/preview?path=media/clip"
    before = browser.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "<video" in before and "poster=" not in before  # nothing to show until processing ran
    processing.process_blob(sha)
    html = browser.get(url, HTTP_HX_REQUEST="true").content.decode()
    poster = html.split('poster="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    response = browser.get(poster)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(b"".join(response.streaming_content))).size == (64, 48)
