"""Image decoding: each kind of file is made on the fly and checked against an independent oracle."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from glipcli.errors import ImageError
from glipcli.io import images
from glipcli.io.images import IMAGE_EXTENSIONS, MAX_PIXELS, decode_image_bytes, load_image, read_image_size

RNG = np.random.default_rng(0)


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming width x height, with no pixel data to allocate."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _quadrants(h: int = 64, w: int = 96) -> np.ndarray:
    """Four flat colours: survive JPEG well enough to tell rotations apart."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 2] = (255, 0, 0)
    arr[: h // 2, w // 2 :] = (0, 255, 0)
    arr[h // 2 :, : w // 2] = (0, 0, 255)
    arr[h // 2 :, w // 2 :] = (255, 255, 0)
    return arr


def _assert_rgb(arr: np.ndarray, shape: tuple[int, int]) -> None:
    assert arr.dtype == np.uint8 and arr.shape == (*shape, 3)
    assert arr.flags.c_contiguous and arr.flags.writeable


def test_constants() -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"} == IMAGE_EXTENSIONS
    assert 10_000_000 <= MAX_PIXELS <= 200_000_000


def test_rgb_png_roundtrip_and_bytes_match_file(tmp_path: Path) -> None:
    arr = RNG.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    out = load_image(path)
    _assert_rgb(out, (17, 23))
    np.testing.assert_array_equal(out, arr)
    np.testing.assert_array_equal(decode_image_bytes(path.read_bytes(), "x.png"), arr)
    assert read_image_size(path) == (23, 17)


def test_grayscale_l_and_la(tmp_path: Path) -> None:
    grey = RNG.integers(0, 256, (9, 11), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "l.png")
    Image.fromarray(np.dstack([grey, 255 - grey]), "LA").save(tmp_path / "la.png")
    for name in ("l.png", "la.png"):
        out = load_image(tmp_path / name)
        _assert_rgb(out, (9, 11))
        np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


def test_16bit_grey_png_tiff_pgm_scaled_not_clipped(tmp_path: Path) -> None:
    grey16 = RNG.integers(0, 65536, (8, 10), dtype=np.uint16)
    expected = np.repeat((grey16 >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    for name in ("g.png", "g.tif", "g.pgm"):  # Pillow opens these as I;16, I;16 and I
        assert cv2.imwrite(str(tmp_path / name), grey16)
        np.testing.assert_array_equal(load_image(tmp_path / name), expected, err_msg=name)


def test_16bit_rgb_png_and_tiff(tmp_path: Path) -> None:
    bgr16 = RNG.integers(0, 65536, (8, 10, 3), dtype=np.uint16)
    expected = (bgr16[:, :, ::-1] >> 8).astype(np.uint8)
    for name in ("c.png", "c.tif"):
        assert cv2.imwrite(str(tmp_path / name), bgr16)
        np.testing.assert_array_equal(load_image(tmp_path / name), expected, err_msg=name)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = [(0, 255, 255, 0), (255, 0, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0)]  # red, green, black, white
    im = Image.new("CMYK", (64, 16))
    for i, colour in enumerate(cmyk):
        im.paste(colour, (16 * i, 0, 16 * (i + 1), 16))
    im.save(tmp_path / "cmyk.jpg", quality=95)
    out = load_image(tmp_path / "cmyk.jpg")
    _assert_rgb(out, (16, 64))
    for i, (c, m, y, k) in enumerate(cmyk):
        want = [255 * (1 - v / 255) * (1 - k / 255) for v in (c, m, y)]
        np.testing.assert_allclose(out[8, 16 * i + 8], want, atol=6)


def test_palette_png_with_transparency_keeps_colours(tmp_path: Path) -> None:
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    index = RNG.integers(0, 256, (12, 7), dtype=np.uint8)
    im = Image.fromarray(index, "P")
    im.putpalette(palette.tobytes())
    im.save(tmp_path / "p.png", transparency=bytes(range(256)))  # per-entry alpha
    im.save(tmp_path / "p1.png", transparency=3)  # one transparent index
    for name in ("p.png", "p1.png"):
        np.testing.assert_array_equal(load_image(tmp_path / name), palette[index], err_msg=name)


def test_rgba_drops_alpha_without_compositing(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgba[:, :, :3])


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [
        (6, lambda a: np.rot90(a, k=-1)),  # camera turned right: display rotated clockwise
        (8, lambda a: np.rot90(a, k=1)),
        (3, lambda a: a[::-1, ::-1]),
        (2, lambda a: a[:, ::-1]),
    ],
)
def test_exif_orientation_applied(tmp_path: Path, orientation: int, expected) -> None:
    arr = _quadrants()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    out = load_image(path)
    want = expected(arr)
    assert out.shape == want.shape
    assert read_image_size(path) == (want.shape[1], want.shape[0])
    assert np.abs(out.astype(int) - want).mean() < 4
    assert out.flags.c_contiguous


def test_corrupt_exif_is_ignored_not_fatal(tmp_path: Path) -> None:
    arr = _quadrants()
    path = tmp_path / "badexif.jpg"
    Image.fromarray(arr).save(path, exif=b"Exif\x00\x00garbage-not-tiff", quality=95)
    assert load_image(path).shape == arr.shape
    assert read_image_size(path) == (96, 64)


def test_multi_frame_gif_and_tiff_give_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((200, 10, 10), (10, 200, 10))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "multi.tif", save_all=True, append_images=frames[1:])
    with Image.open(tmp_path / "multi.tif") as im:
        assert im.n_frames == 2
    for name in ("anim.gif", "multi.tif"):
        out = load_image(tmp_path / name)
        _assert_rgb(out, (6, 8))
        np.testing.assert_allclose(out.reshape(-1, 3).mean(0), (200, 10, 10), atol=3, err_msg=name)


def test_other_formats_and_unicode_names(tmp_path: Path) -> None:
    arr = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for name in ("日本語 ü.bmp", "ß.webp", "emoji 🐟.tiff"):
        path = tmp_path / name
        Image.fromarray(arr).save(path, **({"lossless": True} if name.endswith(".webp") else {}))
        np.testing.assert_array_equal(load_image(path), arr, err_msg=name)
        assert read_image_size(str(path)) == (7, 5)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    for call in (load_image, read_image_size):
        with pytest.raises(ImageError, match=r"empty\.jpg: empty file \(0 bytes\)"):
            call(path)
    with pytest.raises(ImageError, match="empty file"):
        decode_image_bytes(b"", "mem.jpg")


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello, not an image\n")
    for call in (load_image, read_image_size):
        with pytest.raises(ImageError, match=r"notes\.png: not an image"):
            call(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated(tmp_path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert read_image_size(path) == (64, 64)  # the header is intact
    with pytest.raises(ImageError, match=r"cut\.\w+: truncated$"):
        load_image(path)


def test_huge_header_refused_without_allocating(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(60000, 60000))
    for call in (load_image, read_image_size):
        with pytest.raises(ImageError, match=r"bomb\.png: too large: 3600 Mpx > limit 50 Mpx"):
            call(path)


def test_over_our_limit_but_under_pillows(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_png_header_only(12000, 5000))  # 60 Mpx: Pillow would only warn past 89 Mpx
    with pytest.raises(ImageError, match=r"too large: 12000x5000 = 60 Mpx > limit 50 Mpx"):
        load_image(path)
    with pytest.raises(ImageError, match="too large"):
        read_image_size(path)


def test_limit_reports_the_upright_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_PIXELS", 96 * 64 - 1)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "q.jpg"
    Image.fromarray(_quadrants()).save(path, exif=exif)
    with pytest.raises(ImageError, match=r"too large: 64x96 = "):
        load_image(path)


def test_missing_and_directory(tmp_path: Path) -> None:
    for call in (load_image, read_image_size):
        with pytest.raises(ImageError, match=r"nope\.jpg: not found"):
            call(tmp_path / "nope.jpg")
        with pytest.raises(ImageError, match="is a directory"):
            call(tmp_path)


def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reads")
        for call in (load_image, read_image_size):
            with pytest.raises(ImageError, match=r"secret\.png: unreadable: permission denied"):
                call(path)
    finally:
        path.chmod(0o644)


def test_permission_denied_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same as above where chmod cannot deny (root): the OS refusal is injected instead."""
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ImageError, match=r"secret\.png: unreadable: permission denied"):
        load_image(path)
