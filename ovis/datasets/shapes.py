"""The shapes images of the mini-vae experiment, generated exactly (no file)."""
import math

import numpy as np

from .splits import BinaryDataset

SHAPE_KINDS = ("triangle", "square", "ellipse")
SHAPE_COLOURS = {"white": (1, 1, 1), "red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1),
                 "yellow": (1, 1, 0), "magenta": (1, 0, 1), "cyan": (0, 1, 1)}
SHAPE_ANGLES = tuple(k * math.pi / 8 for k in range(8))
SHAPE_SCALES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SHAPES_SIZE = 16
SHAPES_SEED = 1984
SHAPES_HELD_OUT = 118  # 10 % of 1,176, for valid and for test


def shape_masks(size: int = SHAPES_SIZE) -> np.ndarray:
    """Binary masks ``[kind, angle, scale, size, size]`` (pixel centres inside the shape).

    Every shape is centred, has circumradius ``scale * size / 2`` (so it stays inside the image
    at every angle) and is rotated by ``angle``: an equilateral triangle, a square and an
    ellipse with axes ratio 2:1.
    """
    centres = np.arange(size) + 0.5 - size / 2
    x = centres[None, :]  # [1, W], to the right
    y = -centres[:, None]  # [H, 1], upwards
    angles = np.asarray(SHAPE_ANGLES)[:, None, None, None]  # [A, 1, 1, 1]
    radius = (np.asarray(SHAPE_SCALES) * size / 2)[:, None, None]  # [S, 1, 1]
    u = np.cos(angles) * x + np.sin(angles) * y  # coordinates in the shape's frame [A, 1, H, W]
    v = -np.sin(angles) * x + np.cos(angles) * y
    # triangle pointing up: inside the three edges at distance r/2 (inradius) from the centre
    normals = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    triangle = np.all([nu * u + nv * v <= radius / 2 for nu, nv in normals], axis=0)
    square = np.maximum(np.abs(u), np.abs(v)) <= radius / math.sqrt(2)
    ellipse = (u / radius) ** 2 + (v / (radius / 2)) ** 2 <= 1
    return np.stack([triangle, square, ellipse]).astype(np.uint8)  # [3, A, S, H, W]


def shapes_images() -> np.ndarray:
    """All 3 kinds x 7 colours x 8 angles x 7 scales = 1,176 images ``uint8 [n, 3, 16, 16]``
    (binary per channel), in that nested order."""
    masks = shape_masks()  # [3, A, S, H, W]
    colours = np.asarray(list(SHAPE_COLOURS.values()), dtype=np.uint8)  # [7, 3]
    images = masks[:, None, :, :, None] * colours[None, :, None, None, :, None, None]  # [3, 7, A, S, 3, H, W]
    return images.reshape(-1, 3, SHAPES_SIZE, SHAPES_SIZE)


def load_shapes():
    """Shuffled with seed 1984; the last 2 x 118 images are valid and test (disjoint from train)."""
    images = shapes_images()
    images = images[np.random.default_rng(SHAPES_SEED).permutation(len(images))]
    n_train = len(images) - 2 * SHAPES_HELD_OUT
    bounds = (0, n_train, n_train + SHAPES_HELD_OUT, len(images))
    return tuple(BinaryDataset.from_values(images[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
