"""``File``: a file to upload, from a path, from bytes, or from an image-like object or audio samples."""

from __future__ import annotations

import io
import mimetypes
import os
from pathlib import Path
from typing import Any


class File:
    """A file value: ``run["model"].upload(File("model.pt"))`` or ``run["samples"].append(File.as_image(img))``.

    Content given as bytes is kept in memory; a path is read when the file is
    queued (copied into the queue directory, see the README).
    """

    __slots__ = ("path", "content", "name", "mime_type")

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        content: bytes | None = None,
        name: str | None = None,
        mime_type: str | None = None,
    ):
        if (path is None) == (content is None):
            raise ValueError("File needs either a path or content (bytes), not both")
        self.path = Path(path).resolve() if path is not None else None
        if content is not None and not isinstance(content, (bytes, bytearray, memoryview)):
            raise TypeError(f"File content must be bytes, not {type(content).__name__}")
        self.content = bytes(content) if content is not None else None
        self.name = name or (self.path.name if self.path is not None else None)
        self.mime_type = mime_type or (mimetypes.guess_type(self.name)[0] if self.name else None)

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else f"{len(self.content or b'')} bytes"
        return f"File({where!s}, name={self.name!r}, mime_type={self.mime_type!r})"

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], *, mime_type: str | None = None) -> File:
        return cls(path, mime_type=mime_type)

    @classmethod
    def from_content(cls, content: bytes | str, *, name: str | None = None, mime_type: str | None = None) -> File:
        data = content.encode("utf-8") if isinstance(content, str) else content
        return cls(content=data, name=name, mime_type=mime_type or ("text/plain" if isinstance(content, str) else None))

    @classmethod
    def as_image(cls, image: Any, *, name: str | None = None) -> File:
        """PNG of a PIL image, a numpy array (H×W, H×W×3 or H×W×4; floats in [0, 1] or uint8),
        a matplotlib figure or a tensor with ``.numpy()``."""
        return cls(content=image_png(image), name=name or "image.png", mime_type="image/png")

    @classmethod
    def as_audio(cls, samples: Any, sample_rate: int, *, name: str | None = None) -> File:
        """WAV (16-bit PCM) of samples: a numpy array or sequence, mono (N) or N×channels, floats
        in [-1, 1] or integers in the int16 range, or a tensor with ``.numpy()``."""
        return cls(content=audio_wav(samples, sample_rate), name=name or "audio.wav", mime_type="audio/wav")

    @classmethod
    def as_html(cls, obj: Any, *, name: str | None = None) -> File:
        """HTML of a pandas DataFrame or of a string."""
        html = obj if isinstance(obj, str) else obj.to_html()
        return cls(content=html.encode("utf-8"), name=name or "table.html", mime_type="text/html")


def _is_figure(obj: Any) -> bool:
    return type(obj).__module__.startswith("matplotlib") and hasattr(obj, "savefig")


def is_image_like(obj: Any) -> bool:
    module = type(obj).__module__
    if module.startswith("PIL.") or _is_figure(obj):
        return True
    ndim = getattr(obj, "ndim", None)
    return module.startswith(("numpy", "torch")) and ndim in (2, 3)


def image_png(image: Any) -> bytes:
    buffer = io.BytesIO()
    if _is_figure(image):
        image.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("File.as_image needs Pillow: pip install 'runstore[extras]'") from exc
    if isinstance(image, Image.Image):
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    if hasattr(image, "detach"):  # torch tensor, C×H×W
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3, 4):
            image = image.transpose(1, 2, 0)
    import numpy as np

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise TypeError(f"an image array must be H×W, H×W×3 or H×W×4, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = (
            np.clip(np.nan_to_num(array.astype(np.float64)), 0.0, 1.0) * 255.0
            if array.dtype.kind == "f"
            else np.clip(array, 0, 255)
        )
        array = array.astype(np.uint8)
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def audio_wav(samples: Any, sample_rate: int) -> bytes:
    import wave

    import numpy as np

    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 1 <= sample_rate <= 768_000:
        raise ValueError(f"sample_rate must be an integer from 1 to 768000 Hz, got {sample_rate!r}")
    if hasattr(samples, "detach"):  # torch tensor
        samples = samples.detach().cpu().numpy()
    array = np.asarray(samples)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] > 32 or array.size == 0:
        raise TypeError(f"audio samples must be N or N×channels (at most 32), got shape {array.shape}")
    if array.dtype.kind == "f":
        array = np.clip(np.nan_to_num(array.astype(np.float64)), -1.0, 1.0) * 32767.0
    elif array.dtype.kind not in "iub":
        raise TypeError(f"audio samples must be numbers, got {array.dtype}")
    pcm = np.clip(array, -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(pcm.shape[1])
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()
