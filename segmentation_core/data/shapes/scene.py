"""Sampling and rendering of one synthetic ``shapes`` scene.

A scene is a stuff layout (sky / wall above a wavy horizon, grass / water below it, an optional
clutter blob that no class covers) with 1-6 things (circle / square / triangle / star, four
colours, three sizes) drawn on top in order, later things occluding earlier ones. Every thing
keeps at least 60% of its own area visible.

Thing shapes are polygons and their masks are the pycocotools rasterisation of those polygons,
so an unoccluded thing's COCO polygon decodes to exactly its pixels.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
from pycocotools import mask as mask_util

from .categories import SIZE_BINS, STUFF_NAMES, THING_COLORS, THING_NAMES

VOID = -1  # stuff-map value of the clutter blob: no class, ignored in semantic/panoptic GT

_MIN_VISIBLE_FRACTION = 0.6
_MIN_VISIBLE_PIXELS = 40
_MAX_PLACEMENT_TRIES = 60


@dataclass
class Thing:
    """One thing instance. ``polygon`` is a flat [x0, y0, x1, y1, ...] list in pixels."""

    shape: str
    color: str
    size: str
    radius: float
    angle: float
    center: Tuple[float, float]
    polygon: List[float]
    full_mask: np.ndarray  # (H, W) bool, the whole shape
    visible_mask: np.ndarray = None  # (H, W) bool, after occlusion by later things
    stuff_fractions: Dict[str, float] = field(default_factory=dict)

    @property
    def occluded(self) -> bool:
        return bool((self.full_mask & ~self.visible_mask).any())


@dataclass
class Scene:
    """A rendered scene: ``image`` (H, W, 3) uint8 RGB, ``stuff_map`` (H, W) int8 index into
    STUFF_NAMES or VOID, ``things`` in drawing order."""

    height: int
    width: int
    image: np.ndarray
    stuff_map: np.ndarray
    things: List[Thing]


def rasterize_polygon(polygon: List[float], height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a flat polygon, with the pycocotools rasteriser."""
    rles = mask_util.frPyObjects([list(map(float, polygon))], height, width)
    return mask_util.decode(mask_util.merge(rles)).astype(bool)


def _shape_outline(shape: str, radius: float, angle: float) -> np.ndarray:
    """(V, 2) polygon vertices around the origin. Sizes are chosen for similar areas."""
    if shape == "circle":
        t = np.linspace(0.0, 2 * np.pi, 32, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radius
    elif shape == "square":
        t = np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radius * 0.9 * np.sqrt(2)
    elif shape == "triangle":
        t = np.array([-0.5, 1 / 6, 5 / 6]) * np.pi
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radius * 1.3
    elif shape == "star":
        t = np.linspace(0.0, 2 * np.pi, 10, endpoint=False) - np.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.35, 0.6) * radius
        pts = np.stack([np.cos(t) * r, np.sin(t) * r], 1)
    else:
        raise ValueError(f"Unknown shape {shape!r}; expected one of {THING_NAMES}")
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


# ----------------------------------------------------------------------------------- stuff
def _stuff_layout(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    ys = np.arange(h, dtype=np.float64)[:, None]
    xs = np.arange(w, dtype=np.float64)[None, :]
    sky, grass, water, wall = (STUFF_NAMES.index(n) for n in ("sky", "grass", "water", "wall"))
    top = sky if rng.random() < 0.65 else wall
    bottom = grass if rng.random() < 0.5 else water
    horizon = h * rng.uniform(0.3, 0.6) + h * rng.uniform(0.02, 0.08) * np.sin(
        2 * np.pi * xs / rng.uniform(0.5 * w, 1.5 * w) + rng.uniform(0, 2 * np.pi)
    )
    stuff = np.where(ys < horizon, top, bottom).astype(np.int8)
    if rng.random() < 0.35:  # split the ground into grass | water along a wavy vertical line
        other = water if bottom == grass else grass
        border = w * rng.uniform(0.3, 0.7) + w * 0.05 * np.sin(
            2 * np.pi * ys / rng.uniform(0.4 * h, h) + rng.uniform(0, 2 * np.pi)
        )
        right = xs >= border
        stuff[(ys >= horizon) & right] = other
    if top == sky and rng.random() < 0.3:  # a wall block standing on the horizon
        wx = int(w * rng.uniform(0.2, 0.4))
        wy = int(h * rng.uniform(0.05, 0.25))
        cols = slice(0, wx) if rng.random() < 0.5 else slice(w - wx, w)
        block = np.zeros((h, w), bool)
        block[wy:, cols] = True
        stuff[block & (ys < horizon)] = wall
    if rng.random() < 0.3:  # clutter that belongs to no class
        cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
        ay, ax = rng.uniform(0.06, 0.12, size=2) * min(h, w)
        stuff[((ys - cy) / ay) ** 2 + ((xs - cx) / ax) ** 2 <= 1.0] = VOID
    return stuff


def _texture(name: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(H, W, 3) float texture of one stuff class or of the void clutter."""
    ys = np.arange(h, dtype=np.float64)[:, None, None]
    xs = np.arange(w, dtype=np.float64)[None, :, None]
    noise = rng.normal(0.0, 1.0, size=(h, w, 3))
    if name == "sky":
        base = np.array([110.0, 175.0, 230.0]) + (1 - ys / h) * np.array([60.0, 45.0, 20.0])
        cloud = np.zeros((h, w, 1))
        for _ in range(rng.integers(0, 3)):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            sy, sx = rng.uniform(0.04, 0.08) * h, rng.uniform(0.1, 0.2) * w
            cloud += np.exp(-(((ys - cy) / sy) ** 2) - ((xs - cx) / sx) ** 2)
        return base + 70.0 * np.clip(cloud, 0, 1) + 3.0 * noise
    if name == "grass":
        blades = rng.normal(0.0, 12.0, size=(1, w, 1))  # vertical streaks
        return np.array([60.0, 135.0, 45.0]) + blades + 16.0 * noise
    if name == "water":
        ripple = np.sin(2 * np.pi * (ys / rng.uniform(5, 9) + 0.3 * np.sin(xs / rng.uniform(6, 12))))
        return np.array([30.0, 90.0, 165.0]) + 18.0 * ripple * np.array([0.5, 1.0, 1.0]) + 6.0 * noise
    if name == "wall":
        bh, bw = int(rng.integers(7, 11)), int(rng.integers(14, 22))
        row = (ys // bh).astype(int)
        col = ((xs + (row % 2) * (bw // 2)) // bw).astype(int)
        shade = rng.normal(0.0, 10.0, size=(h // bh + 2, w // bw + 3))
        brick = np.array([155.0, 75.0, 55.0]) + shade[row[..., 0], col[..., 0]][..., None]
        mortar = (ys % bh < 1.5) | ((xs + (row % 2) * (bw // 2)) % bw < 1.5)
        return np.where(mortar, np.array([195.0, 190.0, 180.0]), brick) + 5.0 * noise
    if name == "void":
        return rng.uniform(0, 255, size=(h, w, 3))
    raise ValueError(f"Unknown texture {name!r}")


# ---------------------------------------------------------------------------------- things
def _sample_thing(rng: np.random.Generator, h: int, w: int) -> Thing:
    shape = THING_NAMES[rng.integers(len(THING_NAMES))]
    colors = list(THING_COLORS)
    color = colors[rng.integers(len(colors))]
    sizes = list(SIZE_BINS)
    size = sizes[rng.integers(len(sizes))]
    radius = rng.uniform(*SIZE_BINS[size]) * min(h, w)
    angle = rng.uniform(0, 2 * np.pi) if shape != "circle" else 0.0
    outline = _shape_outline(shape, radius, angle)
    lo, hi = outline.min(0), outline.max(0)
    cx = rng.uniform(1 - lo[0], w - 1 - hi[0])
    cy = rng.uniform(1 - lo[1], h - 1 - hi[1])
    pts = np.round(outline + np.array([cx, cy]), 2)
    polygon = [float(v) for v in pts.reshape(-1)]
    return Thing(
        shape=shape, color=color, size=size, radius=float(radius), angle=float(angle),
        center=(float(cx), float(cy)), polygon=polygon,
        full_mask=rasterize_polygon(polygon, h, w),
    )


def _place_things(rng: np.random.Generator, h: int, w: int) -> List[Thing]:
    target = int(rng.integers(1, 7))
    things: List[Thing] = []
    for _ in range(_MAX_PLACEMENT_TRIES):
        if len(things) == target:
            break
        new = _sample_thing(rng, h, w)
        if new.full_mask.sum() < _MIN_VISIBLE_PIXELS:
            continue
        # Occlusion must leave every earlier thing recognisable.
        remaining = [t.visible_mask & ~new.full_mask for t in things]
        if all(
            r.sum() >= max(_MIN_VISIBLE_FRACTION * t.full_mask.sum(), _MIN_VISIBLE_PIXELS)
            for r, t in zip(remaining, things)
        ):
            for t, r in zip(things, remaining):
                t.visible_mask = r
            new.visible_mask = new.full_mask.copy()
            things.append(new)
    return things


def _thing_texture(thing: Thing, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    ys = np.arange(h, dtype=np.float64)[:, None, None]
    xs = np.arange(w, dtype=np.float64)[None, :, None]
    d = rng.normal(size=2)
    d /= np.linalg.norm(d) + 1e-9
    shading = ((xs - thing.center[0]) * d[0] + (ys - thing.center[1]) * d[1]) / thing.radius
    base = np.array(THING_COLORS[thing.color], dtype=np.float64)
    return base + 12.0 * np.clip(shading, -1.5, 1.5) + 5.0 * rng.normal(size=(h, w, 3))


def sample_scene(rng: np.random.Generator, min_size: int = 128, max_size: int = 192) -> Scene:
    """Draw one scene. The same generator state always gives the same scene."""
    h = int(rng.integers(min_size, max_size + 1))
    w = int(rng.integers(min_size, max_size + 1))
    stuff = _stuff_layout(rng, h, w)
    image = np.zeros((h, w, 3), np.float64)
    for idx in sorted(set(np.unique(stuff).tolist())):
        name = "void" if idx == VOID else STUFF_NAMES[idx]
        region = stuff == idx
        image[region] = _texture(name, rng, h, w)[region]
    things = _place_things(rng, h, w)
    for t in things:  # drawing order = occlusion order
        image[t.full_mask] = _thing_texture(t, rng, h, w)[t.full_mask]
        area = t.full_mask.sum()
        t.stuff_fractions = {
            name: float((stuff[t.full_mask] == i).sum() / area) for i, name in enumerate(STUFF_NAMES)
        }
    image += rng.normal(0.0, 2.0, size=image.shape)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return Scene(height=h, width=w, image=image, stuff_map=stuff, things=things)
