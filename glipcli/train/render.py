"""Pixels for synthetic shape scenes: geometry, rasterisers, backgrounds, clutter and degradations.

The trained model is judged on images from renderers we have never seen, so nothing here is
allowed to be a constant signature: every shape is drawn by one of several rasterisers (OpenCV
with and without anti-aliasing, Pillow, 4x supersampling) and every image gets a different
background, clutter and camera-like degradation. Vocabulary (which colour is "red") lives in
``synth.py``; this module only knows geometry and pixels.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

STYLES = ("cv2", "cv2_aa", "pil", "supersample")
_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel vertex positions, so small shapes keep their geometry
_SUPERSAMPLE = 4
_QUARTER_TURN = np.array([[0, 1], [-1, 0]])  # (x, y) -> (-y, x) for row vectors


@dataclass(frozen=True)
class Geometry:
    """An outline around the origin in image axes (y down), already rotated and scaled."""

    points: np.ndarray  # (k, 2) float64 closed outline
    ellipse: tuple[float, float, float] | None = None  # (semi-axis x, semi-axis y, angle in degrees)


def _unit_outline(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Unrotated outline of unit scale with the per-instance variation the vocabulary allows."""
    if shape == "circle":
        t = np.linspace(0.0, 2 * np.pi, 72, endpoint=False)
        return np.stack([np.cos(t), rng.uniform(0.85, 1.0) * np.sin(t)], axis=1)
    if shape == "square":
        return np.array([(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)])
    if shape == "diamond":  # a square turned 45 degrees, or a rhombus up to 0.6 wide
        a = rng.uniform(0.6, 1.0)
        return np.array([(0.0, -1.0), (a, 0.0), (0.0, 1.0), (-a, 0.0)])
    if shape == "triangle":  # around equilateral, whose half-base is 0.577 of its height
        b = rng.uniform(0.48, 0.68)
        return np.array([(0.0, 0.0), (b, 1.0), (-b, 1.0)])
    if shape == "star":  # five points; the inner radius varies so no single star template is learnt
        inner = rng.uniform(0.38, 0.5)
        angles = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if shape == "hexagon":
        angles = np.deg2rad(60.0 * np.arange(6))
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "cross":  # a plus sign; arm width 0.25-0.4 of the full extent
        h = rng.uniform(0.25, 0.4)
        quarter = [(-h, -1.0), (h, -1.0), (h, -h)]  # one arm; the others are it turned by 90 degrees
        return np.concatenate([np.array(quarter) @ np.linalg.matrix_power(_QUARTER_TURN, k) for k in range(4)])
    if shape == "heart":  # the classic parametric heart, y flipped for image axes
        t = np.linspace(0.0, 2 * np.pi, 96, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y], axis=1)
    raise ValueError(f"unknown shape {shape!r}")


def _rotation(shape: str, rng: np.random.Generator) -> float:
    """Degrees. Square and diamond differ only by rotation, so both stay within 20 degrees of their
    upright pose (a square on a side, a diamond on a corner); shapes with no upright turn freely."""
    if shape in ("square", "diamond", "cross"):
        return rng.uniform(-20.0, 20.0)
    if shape == "heart":
        return rng.uniform(-25.0, 25.0)
    return rng.uniform(0.0, 360.0)


def _fit(points: np.ndarray, angle: float, size: float) -> tuple[np.ndarray, float]:
    """Rotate, then scale so the rotated outline's bounding box has longer side ``size``, centred."""
    a = math.radians(angle)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    pts = points @ rot
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    scale = size / float((hi - lo).max())
    return (pts - (lo + hi) / 2) * scale, scale


def sample_geometry(rng: np.random.Generator, shape: str, size: float) -> Geometry:
    """A vocabulary shape whose unoccluded bounding box has longer side ``size`` pixels."""
    unit = _unit_outline(shape, rng)
    angle = _rotation(shape, rng)
    points, scale = _fit(unit, angle, size)
    if shape != "circle":
        return Geometry(points)
    # Positive angle rotates x towards y in image axes, as cv2.ellipse's angle does.
    semi_y = float(np.abs(unit[:, 1]).max())
    return Geometry(points, (scale, semi_y * scale, angle))


def blob_geometry(rng: np.random.Generator, size: float) -> Geometry:
    """An amorphous clutter blob: a wobbly closed curve that is none of the vocabulary shapes."""
    t = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
    r = np.ones_like(t)
    # Elongated (never round like a circle) and lumpy; strong single harmonics would make rounded
    # triangles, clovers or stars, so several weak ones are mixed.
    for k, amplitude in ((2, 0.12), (3, 0.12), (4, 0.05), (5, 0.04), (7, 0.03)):
        r += rng.uniform(0.3, 1.0) * amplitude * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    unit = np.stack([r * np.cos(t), rng.uniform(0.35, 0.65) * r * np.sin(t)], axis=1)
    points, _ = _fit(unit, rng.uniform(0.0, 360.0), size)
    return Geometry(points)


def rasterise(
    geom: Geometry, centre: tuple[float, float], image_hw: tuple[int, int], *, thickness: int, style: str
) -> tuple[np.ndarray, int, int]:
    """Coverage 0-255 of a shape in its window of the image, and the window's (y0, x0).

    ``thickness`` 0 fills the shape; otherwise its outline is stroked that many pixels wide.
    """
    pts = geom.points + np.asarray(centre)
    margin = thickness / 2 + 2
    x0 = max(0, math.floor(pts[:, 0].min() - margin))
    y0 = max(0, math.floor(pts[:, 1].min() - margin))
    x1 = min(image_hw[1], math.ceil(pts[:, 0].max() + margin) + 1)
    y1 = min(image_hw[0], math.ceil(pts[:, 1].max() + margin) + 1)
    local = pts - (x0, y0)
    h, w = y1 - y0, x1 - x0
    if style == "pil":
        return _rasterise_pil(geom, local, (h, w), thickness), y0, x0
    if style == "supersample":
        f = _SUPERSAMPLE
        big = np.zeros((h * f, w * f), np.uint8)
        # Pixel centres: small pixel x covers big pixels f*x .. f*x + f - 1.
        _rasterise_cv2(big, geom, local * f + (f - 1) / 2, geom_scale=f, thickness=thickness * f, line=cv2.LINE_8)
        return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA), y0, x0
    out = np.zeros((h, w), np.uint8)
    line = cv2.LINE_AA if style == "cv2_aa" else cv2.LINE_8
    _rasterise_cv2(out, geom, local, geom_scale=1, thickness=thickness, line=line)
    return out, y0, x0


def _rasterise_cv2(
    out: np.ndarray, geom: Geometry, local: np.ndarray, *, geom_scale: int, thickness: int, line: int
) -> None:
    one = 1 << _SHIFT
    if geom.ellipse is not None:
        centre = local.mean(axis=0)
        ax, ay, angle = geom.ellipse
        c = (round(centre[0] * one), round(centre[1] * one))
        axes = (round(ax * geom_scale * one), round(ay * geom_scale * one))
        cv2.ellipse(out, c, axes, angle, 0, 360, 255, thickness or -1, line, _SHIFT)
        return
    fixed = np.round(local * one).astype(np.int32)
    if thickness:
        cv2.polylines(out, [fixed], True, 255, thickness, line, _SHIFT)
    else:
        cv2.fillPoly(out, [fixed], 255, line, shift=_SHIFT)


def _rasterise_pil(geom: Geometry, local: np.ndarray, hw: tuple[int, int], thickness: int) -> np.ndarray:
    canvas = Image.new("L", (hw[1], hw[0]), 0)
    draw = ImageDraw.Draw(canvas)
    if geom.ellipse is not None and abs(geom.ellipse[0] - geom.ellipse[1]) < 0.5:
        (x0, y0), (x1, y1) = local.min(axis=0), local.max(axis=0)  # a true circle: Pillow's own ellipse
        if thickness:
            draw.ellipse((x0, y0, x1, y1), outline=255, width=thickness)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=255)
    elif thickness:
        ring = [tuple(p) for p in local] + [tuple(local[0])]
        draw.line(ring, fill=255, width=thickness, joint="curve")
    else:
        draw.polygon([tuple(p) for p in local], fill=255)
    return np.asarray(canvas)


def composite(canvas: np.ndarray, coverage: np.ndarray, y0: int, x0: int, paint: np.ndarray) -> None:
    """Alpha-blend ``paint`` (RGB, or an (h, w, 3) field) into float32 ``canvas`` in place."""
    h, w = coverage.shape
    a = coverage[..., None].astype(np.float32) * (1.0 / 255.0)
    region = canvas[y0 : y0 + h, x0 : x0 + w]
    region += (paint - region) * a


def shaded(rgb: np.ndarray, hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A flat colour, or a gentle linear brightness ramp across the window (lit surfaces, gradients)."""
    if rng.random() < 0.7:
        return rgb
    h, w = hw
    a = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(a) * np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    ramp = ramp + np.sin(a) * np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    gain = 1.0 + rng.uniform(0.04, 0.12) * ramp / max(1e-6, float(np.abs(ramp).max()))
    return np.clip(rgb[None, None, :] * gain[..., None], 0, 255)


def hsv_colour(h: float, s: float, v: float) -> np.ndarray:
    """RGB float32 0-255 from hue in degrees, saturation and value in 0-1."""
    return np.array(colorsys.hsv_to_rgb((h % 360) / 360, s, v), np.float32) * 255


def muted_colour(rng: np.random.Generator, tone: tuple[float, float]) -> np.ndarray:
    """Greys, tints and browns for backgrounds and clutter; with value in 0.25-0.85 none reads as a colour name."""
    if rng.random() < 0.25:  # brown: a dark, desaturated orange
        return hsv_colour(rng.uniform(15, 40), rng.uniform(0.35, 0.65), rng.uniform(0.25, 0.55))
    return hsv_colour(rng.uniform(0, 360), rng.uniform(0, 0.2), rng.uniform(*tone))


def _grain(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit Gaussian noise from a randomly shifted 64-pixel tile: full-size draws cost ~15 ms here."""
    tile = rng.standard_normal((64, 64, *shape[2:]), dtype=np.float32)
    tile = np.roll(tile, tuple(int(v) for v in rng.integers(0, 64, 2)), axis=(0, 1))
    reps = (-(-shape[0] // 64), -(-shape[1] // 64)) + (1,) * (len(shape) - 2)
    return np.tile(tile, reps)[: shape[0], : shape[1]]


def _upsample(coarse: np.ndarray, hw: tuple[int, int], interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    return cv2.resize(coarse.astype(np.float32), (hw[1], hw[0]), interpolation=interpolation)


def flat(colour: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float32 filled with one colour (numpy's broadcast fill is ~10x slower)."""
    return _upsample(np.asarray(colour, np.float32).reshape(1, 1, 3), hw, cv2.INTER_NEAREST)


def _base(rng: np.random.Generator, hw: tuple[int, int], tone: tuple[float, float]) -> np.ndarray:
    """Flat, saturated, corner-blended or gradient base colour, built coarse and upsampled (smooth anyway)."""
    kind = rng.random()
    if kind < 0.2:
        return flat(muted_colour(rng, tone), hw)
    if kind < 0.28:  # strongly coloured: shapes of that colour are rejected by the contrast check
        return flat(hsv_colour(rng.uniform(0, 360), rng.uniform(0.4, 0.9), rng.uniform(*tone)), hw)
    if kind < 0.6:  # four corner colours, bilinearly blended
        return _upsample(np.stack([muted_colour(rng, tone) for _ in range(4)]).reshape(2, 2, 3), hw)
    c0, c1 = muted_colour(rng, tone), muted_colour(rng, tone)
    ys, xs = np.linspace(0, 1, 33)[:, None], np.linspace(0, 1, 33)[None, :]
    if rng.random() < 0.5:
        a = rng.uniform(0, 2 * np.pi)
        t = np.cos(a) * xs + np.sin(a) * ys
    else:
        cx, cy = rng.uniform(0, 1, 2)
        t = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    return _upsample(c0 + (c1 - c0) * t[..., None], hw)


def _texture(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray | None:
    """A low-contrast grey-level texture (blotches, stripes, checkers or grain), or None."""
    h, w = hw
    kind = rng.random()
    if kind < 0.25:  # blotches: coarse noise upsampled bicubically
        cells = int(rng.integers(4, 40))
        coarse = rng.standard_normal((max(2, h * cells // max(hw)), max(2, w * cells // max(hw))))
        return _upsample(coarse, hw, cv2.INTER_CUBIC) * rng.uniform(2.5, 15)
    if kind < 0.4:  # stripes at any angle: sin(ax + by) from two outer products
        a, k = rng.uniform(0, np.pi), 2 * np.pi / rng.uniform(6, 60)
        x, y = np.arange(w, dtype=np.float32) * (k * np.cos(a)), np.arange(h, dtype=np.float32) * (k * np.sin(a))
        return (np.outer(np.sin(y), np.cos(x)) + np.outer(np.cos(y), np.sin(x))) * rng.uniform(4, 16)
    if kind < 0.55:  # checkers
        cell = int(rng.integers(8, 64))
        odd = ((np.arange(h) // cell)[:, None] + (np.arange(w) // cell)[None, :]) & 1
        return (odd.astype(np.float32) * 2 - 1) * rng.uniform(4, 14)
    if kind < 0.7:  # fine grain, as on paper or a sensor
        return _grain(rng, hw) * rng.uniform(2, 8)
    return None


def background(rng: np.random.Generator, hw: tuple[int, int], tone: tuple[float, float]) -> np.ndarray:
    """(H, W, 3) float32 0-255: a base colour field plus, often, a grey-level texture."""
    canvas = _base(rng, hw, tone)
    texture = _texture(rng, hw)
    if texture is not None:
        canvas += cv2.merge([texture] * 3)
    return np.clip(canvas, 0, 255, out=canvas)


def scribble(canvas: np.ndarray, rng: np.random.Generator, colour: np.ndarray) -> None:
    """A thin straight or wavy stroke across the canvas: no corners, so it never outlines a shape."""
    h, w = canvas.shape[:2]
    p0, p1 = rng.uniform(0, 1, (2, 2)) * (w, h)
    normal = np.array([p0[1] - p1[1], p1[0] - p0[0]]) / max(1e-6, float(np.hypot(*(p1 - p0))))
    t = np.linspace(0, 1, 32)[:, None]
    wave = rng.uniform(0, 40) * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t + rng.uniform(0, 2 * np.pi))
    pts = np.rint(p0 + t * (p1 - p0) + wave * normal).astype(np.int32)
    line = cv2.LINE_AA if rng.random() < 0.5 else cv2.LINE_8
    cv2.polylines(canvas, [pts], False, tuple(float(c) for c in colour), int(rng.integers(1, 4)), line)


def degrade(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise, blur or resampling, and JPEG artefacts, each at random; returns uint8 RGB."""
    h, w = canvas.shape[:2]
    if rng.random() < 0.3:
        canvas = canvas + _grain(rng, canvas.shape) * rng.uniform(2, 7)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    blur = rng.random()
    if blur < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.2))
    elif blur < 0.45:
        f = rng.uniform(0.5, 0.8)
        small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        image = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        _, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
        image = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return image
