"""Image grids of prior samples and reconstructions, with numpy and Pillow."""
import numpy as np
import torch
from PIL import Image
from torch import Tensor


def image_grid(images: Tensor, nrow: int = 10, padding: int = 2) -> np.ndarray:
    """Tile ``images`` ``[n, C, H, W]`` into a ``uint8`` array ``[rows*(H+p)+p, nrow*(W+p)+p, C]``.

    Values are min-max normalised over the whole grid (so that samples stay comparable);
    padding is black. Single-channel grids keep one channel."""
    if images.dim() != 4:
        raise ValueError(f"image_grid expects [n, C, H, W] images, got shape {tuple(images.shape)}")
    images = images.detach().float().cpu()
    low, high = images.min(), images.max()
    images = (images - low) / (high - low) if high > low else torch.zeros_like(images)
    n, channels, height, width = images.shape
    rows = (n + nrow - 1) // nrow
    tiles = torch.zeros(rows * nrow, channels, height + padding, width + padding)
    tiles[:n, :, padding:, padding:] = images  # each tile has padding on its top and left
    grid = tiles.view(rows, nrow, channels, height + padding, width + padding).permute(2, 0, 3, 1, 4)
    grid = grid.reshape(channels, rows * (height + padding), nrow * (width + padding))
    grid = torch.nn.functional.pad(grid, (0, padding, 0, padding))  # close the bottom and right edges
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def save_png(grid: np.ndarray, path: str, scale: int = 2) -> None:
    """Save a ``[H, W, C]`` uint8 grid, enlarged ``scale`` times (nearest neighbour) for viewing."""
    image = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.save(path)


def interleave_rows(originals: Tensor, reconstructions: Tensor, nrow: int = 10) -> Tensor:
    """Alternate rows of ``nrow`` originals and their reconstructions (both ``[n, C, H, W]``); one
    row of each when there are fewer than ``nrow`` originals."""
    nrow = min(nrow, originals.shape[0])
    n = originals.shape[0] - originals.shape[0] % nrow
    pairs = torch.stack([originals[:n].reshape(-1, nrow, *originals.shape[1:]),
                         reconstructions[:n].reshape(-1, nrow, *reconstructions.shape[1:])], dim=1)
    return pairs.reshape(-1, *originals.shape[1:])  # [2n, C, H, W]


PRIOR_SAMPLES = 100
RECONSTRUCTIONS = 50


def distribution_mean(distribution) -> Tensor:
    """The mean of ``distribution``, or a sample where the mean is not implemented."""
    try:
        return distribution.mean
    except NotImplementedError:
        return distribution.sample()


@torch.no_grad()
def model_image_grids(model, x: Tensor, x_shape) -> dict:
    """``{"prior-samples": grid, "reconstructions": grid}``: the means of p(x|z) for
    ``PRIOR_SAMPLES`` prior samples, and ``x`` ``[n, *x_shape]`` interleaved with its reconstructions."""
    x_shape = tuple(x_shape)
    samples = distribution_mean(model.sample_from_prior(PRIOR_SAMPLES)["px"])
    reconstructions = distribution_mean(model(x)["px"]).reshape(-1, *x_shape)  # [n, *x_shape]
    return {"prior-samples": image_grid(samples.reshape(-1, *x_shape)),
            "reconstructions": image_grid(interleave_rows(x, reconstructions))}
