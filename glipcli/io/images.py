"""Safe image decoding: every file a user can hand us either becomes an RGB array or an ImageError.

Decoding follows official GLIP (Pillow, ``convert("RGB")``), plus EXIF orientation, which users
expect and the official code does not apply. Sizes are checked from the header before any pixel
is decoded, so a crafted or huge file costs nothing.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from glipcli.errors import ImageError

MAX_PIXELS: int = 50_000_000
"""Largest image (width x height, after orientation) we decode; larger ones are refused."""

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
"""What folder walks pick up. Pillow decodes them all; of a GIF (or any multi-frame file) the first frame."""

_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that displays the image upright (as ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Modes holding more than 8 bits of grey that convert("RGB") would clip instead of scale.
_WIDE_GREY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def load_image(path: str | Path) -> np.ndarray:
    """Decode a file into a contiguous (H, W, 3) uint8 RGB array, upright per its EXIF."""
    return decode_image_bytes(_read_bytes(Path(path)), str(path))


def decode_image_bytes(data: bytes, name: str) -> np.ndarray:
    """Decode in-memory file contents exactly as :func:`load_image` does; ``name`` is for messages."""
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    with _open(io.BytesIO(data), name) as im:
        orientation = _orientation(im)
        _check_size(im.size, orientation, name)
        try:
            im.load()
        except Exception as e:  # any failure of the decoder is a damaged file
            raise ImageError(f"{name}: {_decode_reason(e)}") from None
        if orientation in _TRANSPOSE:
            im = im.transpose(_TRANSPOSE[orientation])
        return _to_rgb(im)


def decode_or_reason(path: Path, load: Callable[[Path], np.ndarray] = load_image) -> np.ndarray | str:
    """The image as RGB, or why it cannot be used (the ImageError message without the path): runs
    over many images skip a bad file with its reason rather than stop."""
    try:
        return load(path)
    except ImageError as exc:
        message = str(exc)
        prefix = f"{path}: "
        return message[len(prefix) :] if message.startswith(prefix) else message


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header without decoding pixels.

    Agrees with ``load_image(path).shape[1::-1]``; images :func:`load_image` refuses as too large
    are refused here too.
    """
    path = Path(path)
    if _file_size(path) == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    with _open(path, str(path)) as im:
        orientation = _orientation(im)
        _check_size(im.size, orientation, str(path))
        return _oriented_size(im.size, orientation)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: {_os_reason(e)}") from None


def _file_size(path: Path) -> int:
    try:
        info = path.stat()
    except OSError as e:
        raise ImageError(f"{path}: {_os_reason(e)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"{path}: is a directory, not an image")
    return info.st_size


def _open(source: io.BytesIO | Path, name: str) -> Image.Image:
    """Parse the header only; Pillow decodes lazily."""
    try:
        return Image.open(source)
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (unrecognised or damaged header)") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: {_bomb_reason(e)}") from None
    except OSError as e:
        if e.errno is not None:  # the file system failed, not the format
            raise ImageError(f"{name}: {_os_reason(e)}") from None
        raise ImageError(f"{name}: {_decode_reason(e)}") from None
    except Exception as e:  # plugins raise anything on hostile headers
        raise ImageError(f"{name}: {_decode_reason(e)}") from None


def _orientation(im: Image.Image) -> int:
    """The EXIF/XMP orientation known from the header (1 when absent or unreadable).

    Pillow's PNG ``getexif`` decodes the whole image to look for an eXIf chunk stored after the
    pixels; the base implementation reads only what the header gave, which keeps
    :func:`read_image_size` header-only and in agreement with :func:`load_image`.
    """
    try:
        value = Image.Image.getexif(im).get(_ORIENTATION_TAG, 1)
    except Exception:  # EXIF is metadata; a corrupt block must not cost the pixels
        return 1
    return value if isinstance(value, int) else 1


def _oriented_size(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    width, height = size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _check_size(size: tuple[int, int], orientation: int, name: str) -> None:
    width, height = _oriented_size(size, orientation)
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name}: too large: {width}x{height} = {_mpx(width * height)} Mpx > limit {_mpx(MAX_PIXELS)} Mpx"
        )
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: not an image (header claims {width}x{height} pixels)")


def _to_rgb(im: Image.Image) -> np.ndarray:
    """RGB exactly as ``convert("RGB")`` gives it, except wide grey, which is scaled, not clipped."""
    if im.mode in _WIDE_GREY_MODES:
        # "I" comes from 16-bit PGM/TIFF/PNG; values beyond 16 bits are clipped, then the top byte kept.
        grey = (np.clip(np.asarray(im).astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if im.mode == "P" and "transparency" in im.info:
        # Same pixels as convert("RGB"), which warns on per-entry palette transparency.
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.array(im, dtype=np.uint8))


def _mpx(pixels: int) -> str:
    return f"{pixels / 1e6:.1f}".rstrip("0").rstrip(".")


def _bomb_reason(e: Image.DecompressionBombError) -> str:
    """Pillow refuses absurd headers before we see their size; report the pixel count it gives."""
    words = str(e).replace("(", " ").split()
    pixels = next((int(w) for w in words if w.isdigit()), None)
    claimed = f"{_mpx(pixels)} Mpx" if pixels is not None else "more pixels than Pillow allows"
    return f"too large: {claimed} > limit {_mpx(MAX_PIXELS)} Mpx"


def _decode_reason(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "truncated" in text.lower():
        return "truncated"
    return f"damaged image ({text})"


def _os_reason(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "not found"
    if isinstance(e, PermissionError):
        return "unreadable: permission denied"
    if isinstance(e, IsADirectoryError):
        return "is a directory, not an image"
    return f"unreadable: {e.strerror or os.strerror(e.errno or 0)}"
