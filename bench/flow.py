"""Optical flow computed during prepare (src/latefusion/data/flow.py): its accuracy on synthetic
motion with exact ground truth, and what it costs per clip when preparing UCF101 or Kinetics-400.

    OMP_NUM_THREADS=1 python bench/flow.py [--clips 3] [--opencv]

Accuracy: mean end-point error (EPE, pixels) away from a 16-pixel border, on 240 x 320 frames of a
random sum of sinusoids; the second frame is the texture evaluated at exactly moved coordinates, so
the ground truth is exact: two translations, a rotation + zoom, and an object moving over a moving
background with noise (motion boundaries, occlusions: where Horn-Schunck is weakest). `--opencv`
adds OpenCV's TV-L1 (contrib), DIS and Farneback on the same frames, for reference; OpenCV is not a
dependency of the project (pip install opencv-contrib-python-headless to run it).

Cost: clips written with PyAV in the shapes of UCF101 (320 x 240, 25 fps, 7 s, MPEG-4 .avi) and of
a Kinetics download (640 x 360, 30 fps, 10 s, H.264), then the recipes' steps timed one by one:
decoding the video, the RGB frames prepare stores, and 5 flow fields computed (flow.video_flow).
One process, one thread: prepare runs one such process per core.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from latefusion.data.flow import estimate_flow, video_flow
from latefusion.data.media import decode_video, spread_frames

HEIGHT, WIDTH, BORDER = 240, 320, 16


def texture(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros(x.shape)
    for _ in range(16):
        period, angle, phase = rng.uniform(5, 60), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        image += np.sin(2 * np.pi / period * (np.cos(angle) * x + np.sin(angle) * y) + phase)
    return 128 + 90 * image / 6


def affine_case(matrix: np.ndarray, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames 1 and 2 of the texture under p -> matrix (p - centre) + centre + shift, and the true flow."""
    y, x = np.mgrid[:HEIGHT, :WIDTH].astype(np.float64)
    cx, cy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    inverse = np.linalg.inv(matrix)
    qx, qy = x - cx - shift[0], y - cy - shift[1]  # where frame 2's pixel came from
    sx, sy = inverse[0, 0] * qx + inverse[0, 1] * qy + cx, inverse[1, 0] * qx + inverse[1, 1] * qy + cy
    u = matrix[0, 0] * (x - cx) + matrix[0, 1] * (y - cy) + cx + shift[0] - x
    v = matrix[1, 0] * (x - cx) + matrix[1, 1] * (y - cy) + cy + shift[1] - y
    return texture(x, y, 0), texture(sx, sy, 0), np.stack([u, v])


def layered_case(noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 100 x 120 object moving (8, 0) over a background moving (-2, 1), Gaussian noise on both frames."""
    y, x = np.mgrid[:HEIGHT, :WIDTH].astype(np.float64)

    def on_object(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # in frame 1's coordinates
        return (y >= 70) & (y < 170) & (x >= 100) & (x < 220)

    inside, lands_inside = on_object(x, y), on_object(x - 8, y)  # lands_inside: frame 2's pixels showing the object
    first = np.where(inside, texture(x, y, 1), texture(x, y, 0))
    second = np.where(lands_inside, texture(x - 8, y, 1), texture(x + 2, y - 1, 0))
    rng = np.random.default_rng(0)
    first, second = (f + rng.normal(0, noise, f.shape) for f in (first, second))
    truth = np.stack([np.where(inside, 8.0, -2.0), np.where(inside, 0.0, 1.0)])
    return first, second, truth


def cases() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    angle, zoom = np.deg2rad(1.7), 1.03
    rotation = zoom * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    found = {
        "translation (3, -2)": affine_case(np.eye(2), (3.0, -2.0)),
        "translation (0.4, -0.3)": affine_case(np.eye(2), (0.4, -0.3)),
        "rotation 1.7 deg + zoom 3%": affine_case(rotation, (0.0, 0.0)),
        "object over background, noise 4": layered_case(4.0),
    }
    return {name: (np.clip(a, 0, 255).round().astype(np.uint8), np.clip(b, 0, 255).round().astype(np.uint8), t) for name, (a, b, t) in found.items()}


def end_point_error(flow: np.ndarray, truth: np.ndarray) -> float:
    inner = (slice(None), slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    return float(np.sqrt(((flow[inner] - truth[inner]) ** 2).sum(0)).mean())


def opencv_estimators() -> dict:
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    found = {
        "OpenCV DIS (medium)": lambda a, b: dis.calc(a, b, None),
        "OpenCV Farneback": lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 3, 5, 1.2, 0),
    }
    if hasattr(cv2, "optflow"):
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        found = {"OpenCV TV-L1 (contrib, defaults)": lambda a, b: tvl1.calc(a, b, None), **found}
    return found


def accuracy(with_opencv: bool) -> None:
    pairs = cases()
    estimators = {"ours (flow.py)": lambda a, b: estimate_flow(torch.from_numpy(a)[None], torch.from_numpy(b)[None])[0].numpy()}
    if with_opencv:
        estimators.update({name: (lambda f: lambda a, b: f(a, b).transpose(2, 0, 1))(f) for name, f in opencv_estimators().items()})
    print(f"\nmean end-point error, pixels ({HEIGHT} x {WIDTH}, {BORDER}-pixel border left out); seconds for all pairs\n")
    print("| estimator | " + " | ".join(pairs) + " | s |")
    print("|---|" + "---:|" * (len(pairs) + 1))
    for name, estimate in estimators.items():
        start = time.perf_counter()
        with torch.inference_mode():
            errors = [end_point_error(estimate(a, b), truth) for a, b, truth in pairs.values()]
        print(f"| {name} | " + " | ".join(f"{e:.3f}" for e in errors) + f" | {time.perf_counter() - start:.2f} |")


def write_clip(path: Path, width: int, height: int, fps: int, seconds: float, codec: str) -> None:
    import av

    y, x = np.mgrid[:height, :width].astype(np.float64)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(round(fps * seconds)):
            grey = np.clip(texture(x - 1.5 * k, y - 0.5 * k, 0), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.repeat(grey[..., None], 3, -1), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def cost(clips: int) -> None:
    shapes = {"UCF101 (320x240, 25 fps, 7 s, .avi)": (320, 240, 25, 7.0, "mpeg4", "avi"),
              "Kinetics (640x360, 30 fps, 10 s, .mp4)": (640, 360, 30, 10.0, "libx264", "mp4")}
    print(f"\nseconds per clip, mean of {clips} clips: 3 RGB frames and 5 flow fields stored at 224 px\n")
    print("| clip | decode video | RGB frames | flow (5 fields) | total |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name, (width, height, fps, seconds, codec, suffix) in shapes.items():
            path = Path(folder) / f"clip.{suffix}"
            write_clip(path, width, height, fps, seconds, codec)
            times = np.zeros(3)
            for _ in range(clips):
                start = time.perf_counter()
                frames = decode_video(path)
                decoded = time.perf_counter()
                spread_frames(frames, 3, 224)
                sampled = time.perf_counter()
                with torch.inference_mode():
                    video_flow(path, frames, 5, 224)
                times += [decoded - start, sampled - decoded, time.perf_counter() - sampled]
            times /= clips
            print(f"| {name} | {times[0]:.3f} | {times[1]:.3f} | {times[2]:.3f} | {times.sum():.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=3, help="clips timed per shape")
    parser.add_argument("--opencv", action="store_true", help="compare with OpenCV's TV-L1, DIS and Farneback (needs opencv-contrib-python-headless)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {platform.processor() or platform.machine()}")
    accuracy(args.opencv)
    cost(args.clips)


if __name__ == "__main__":
    main()
