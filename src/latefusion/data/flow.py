"""Dense optical flow for `latefusion prepare`, for clips that come without precomputed flow.

The estimator is Horn-Schunck (a quadratic data term and a quadratic smoothness term) made to
handle large motions the usual way: coarse to fine over an image pyramid, re-linearised around the
current estimate a few times per level (warping), with a 3 x 3 median filter on the flow after each
warp (Sun, Roth and Black, "Secrets of optical flow estimation", CVPR 2010, found that filter to be
what makes such classic methods accurate). Plain torch, batched over the frame pairs of a clip.

It is not TV-L1 (Zach et al., 2007), which the two-stream releases of UCF101 flow were made with:
TV-L1's robust penalties keep motion boundaries sharp and ignore outliers (occlusions, lighting
changes), where Horn-Schunck blurs flow across boundaries and lets outliers spread. On
bench/flow.py's synthetic pairs its mean error is under 0.1 pixel for translations and a rotation
+ zoom (OpenCV's TV-L1: under 0.05) and about 1.7 times TV-L1's around a moving object (0.39 vs
0.23 pixel; bench/README.md). How much that costs a flow stream's accuracy against published
two-stream numbers was not measured. For the closest match to the literature, use a precomputed
TV-L1 release.

What is stored matches those releases, so training does not care where flow came from: x is
horizontal (positive to the right), y vertical (positive downwards); frame t's pixel (x, y) moves
to (x + u, y + v) in frame t + 1; values are in pixels of the frame the flow was computed on (the
video's own frames, as the UCF101 releases; frames with a shorter side above WORK_SIDE are scaled
down to it first, as Kinetics videos usually are before flow), clipped to +-20 pixels and mapped
linearly onto 0..255 (128 = no motion): the bound and mapping of TSN's dense_flow tool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .media import MediaError, gray_frames

BOUND = 20.0  # pixels; the clipping bound of the common TV-L1 releases (TSN's dense_flow `-b 20`)
WORK_SIDE = 256  # flow is computed on frames whose shorter side is at most this many pixels

# Tuned on textured synthetic pairs (translations, rotation + zoom, an object moving over a moving
# background with noise: bench/flow.py): accuracy barely improves beyond these, time grows linearly.
ALPHA = 8.0  # smoothness weight, for intensities in 0..255
LEVEL_MIN_SIDE = 12  # the pyramid's coarsest level keeps its shorter side at least this long
WARPS = 3
ITERATIONS = 40  # Jacobi sweeps per warp

DERIVATIVE = torch.tensor([1.0, -8.0, 0.0, 8.0, -1.0]) / 12.0


def gradients(image: Tensor) -> tuple[Tensor, Tensor]:
    """d/dx and d/dy of (B, 1, H, W) with a 5-tap central difference, replicated borders."""
    dx = F.conv2d(F.pad(image, (2, 2, 0, 0), mode="replicate"), DERIVATIVE.view(1, 1, 1, 5))
    dy = F.conv2d(F.pad(image, (0, 0, 2, 2), mode="replicate"), DERIVATIVE.view(1, 1, 5, 1))
    return dx, dy


def blur(x: Tensor) -> Tensor:
    """The 3 x 3 binomial blur ([1 2 1] x [1 2 1] / 16), replicated borders. Slices and adds: several
    times faster than a one-channel conv2d on the CPU."""
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    rows = padded[..., :-2, :] + 2 * padded[..., 1:-1, :] + padded[..., 2:, :]
    return (rows[..., :-2] + 2 * rows[..., 1:-1] + rows[..., 2:]) / 16


def neighbour_mean(flow: Tensor) -> Tensor:
    """Horn and Schunck's weighted mean of the 8 neighbours, [1 2 1; 2 0 2; 1 2 1] / 12."""
    return (16 * blur(flow) - 4 * flow) / 12


def median3(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


def median_filter(flow: Tensor) -> Tensor:
    """3 x 3 median with replicated borders, exactly, without sorting 9 values per pixel: sort each
    vertical triple once; a window's median is then the median of (the largest of its three column
    minima, the median of its column medians, the smallest of its column maxima)."""
    padded = F.pad(flow, (1, 1, 1, 1), mode="replicate")
    top, centre, bottom = padded[..., :-2, :], padded[..., 1:-1, :], padded[..., 2:, :]
    low = torch.minimum(torch.minimum(top, centre), bottom)
    high = torch.maximum(torch.maximum(top, centre), bottom)
    middle = median3(top, centre, bottom)

    def columns(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return x[..., :-2], x[..., 1:-1], x[..., 2:]

    largest_low = torch.maximum(torch.maximum(*columns(low)[:2]), columns(low)[2])
    smallest_high = torch.minimum(torch.minimum(*columns(high)[:2]), columns(high)[2])
    return median3(largest_low, median3(*columns(middle)), smallest_high)


def warp(image: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """`image` sampled at (x + u, y + v), and where that point lies inside the image."""
    b, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=image.dtype), torch.arange(w, dtype=image.dtype), indexing="ij")
    x, y = xs + flow[:, 0], ys + flow[:, 1]
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
    sampled = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return sampled, inside.unsqueeze(1)


def refine(first: Tensor, second: Tensor, flow: Tensor) -> Tensor:
    """One pyramid level: re-linearise the brightness constancy at the current flow WARPS times and
    relax the Horn-Schunck equations for the whole flow (not only the increment) each time."""
    first_dx, first_dy = gradients(first)
    for _ in range(WARPS):
        warped, inside = warp(second, flow)
        warped_dx, warped_dy = gradients(warped)
        ix = torch.where(inside, 0.5 * (first_dx + warped_dx), 0.0)
        iy = torch.where(inside, 0.5 * (first_dy + warped_dy), 0.0)
        it = torch.where(inside, warped - first, 0.0)
        # Linearised at `flow`: ix (u - u0) + iy (v - v0) + it = 0, so the constant part is it - ix u0 - iy v0.
        constant = it - ix * flow[:, :1] - iy * flow[:, 1:]
        gradient = torch.cat([ix, iy], dim=1)
        denominator = ALPHA**2 + ix**2 + iy**2
        for _ in range(ITERATIONS):
            mean = neighbour_mean(flow)
            residual = (ix * mean[:, :1] + iy * mean[:, 1:] + constant) / denominator
            flow = mean - gradient * residual
        flow = median_filter(flow)
    return flow


def pyramid(images: Tensor) -> list[Tensor]:
    """Finest first; each level half the size of the one before (antialiased), down to LEVEL_MIN_SIDE."""
    levels = [images]
    while min(levels[-1].shape[-2:]) >= 2 * LEVEL_MIN_SIDE:
        levels.append(F.interpolate(levels[-1], scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False))
    return levels


def estimate_flow(first: Tensor, second: Tensor) -> Tensor:
    """Flow from each frame of `first` to the same frame of `second`: grayscale (B, H, W) in 0..255
    -> (B, 2, H, W) float32 in pixels, channel 0 = x (right), 1 = y (down)."""
    images = torch.stack([first, second], dim=1).float()  # (B, 2, H, W): both frames share one pyramid
    levels = pyramid(blur(images))  # against noise and compression artefacts
    flow = torch.zeros(images.shape[0], 2, *levels[-1].shape[-2:])
    for level in reversed(levels):
        h, w = level.shape[-2:]
        if flow.shape[-2:] != (h, w):  # a coarser level's flow, in this level's pixels
            scale = torch.tensor([w / flow.shape[-1], h / flow.shape[-2]]).view(1, 2, 1, 1)
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False) * scale
        flow = refine(level[:, :1], level[:, 1:], flow)
    return flow


def quantise(flow: Tensor) -> np.ndarray:
    """Flow in pixels (..., 2) -> uint8 as the TV-L1 releases store it: [-BOUND, BOUND] onto 0..255."""
    return torch.round((flow.clamp(-BOUND, BOUND) + BOUND) * (255 / (2 * BOUND))).to(torch.uint8).numpy()


def flow_stack(gray: np.ndarray, size: int) -> np.ndarray:
    """Consecutive grayscale frames (L + 1, h, w) uint8 -> the L flow fields between them, resized
    (squashed, values kept in the computing frame's pixels, as a resized flow JPEG keeps them) to
    `size` x `size`: (L, size, size, 2) uint8, the stored layout of precomputed flow."""
    with torch.inference_mode():
        frames = torch.from_numpy(np.ascontiguousarray(gray))
        flow = estimate_flow(frames[:-1], frames[1:])
        flow = F.interpolate(flow, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return quantise(flow.permute(0, 2, 3, 1))


def middle_window(frames: int, count: int) -> slice:
    """The `count` + 1 frames giving `count` consecutive flow fields from a clip's middle: the fields
    prepare takes from a precomputed flow folder (see ucf101.read_flow_stack)."""
    start = (frames - 1 - count) // 2
    return slice(start, start + count + 1)


def video_flow(video: Path, frames: list, count: int, size: int) -> np.ndarray:
    """`count` consecutive flow fields from the middle of a decoded video (PyAV frames), computed on
    its frames scaled down to a WORK_SIDE shorter side when larger: (count, size, size, 2) uint8."""
    if len(frames) < count + 1:
        raise MediaError(f"{video}: {len(frames)} frames, too few for flow_frames={count} computed flow fields (needs {count + 1})")
    return flow_stack(gray_frames(frames[middle_window(len(frames), count)], WORK_SIDE), size)
