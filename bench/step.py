"""Training-step cost of each method, through the project's own code path, as a ratio to naive fusion.

    OMP_NUM_THREADS=2 python bench/step.py --shape small              # synthetic-preset shapes, MLPs
    python bench/step.py --shape vggsound --batch 64 --device cuda    # VGG-Sound shapes, two ResNet18

A step is what the training loop does per batch: method.training_loss, method.backward,
optimizer.step (MLA takes one step per modality per batch, so its row is a whole batch). Inputs are
random tensors of the chosen shapes, already on the device: this times the model and the method,
not the loader (bench/loader.py times that). UMT is timed twice: teachers run live, and with the
teacher features read from the cache (`teacher_cache: auto` on a split without augmentation).
The median of `--steps` timed steps after `--warmup` untimed ones; every row ran in this process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from latefusion.config import resolve_config
from latefusion.data import DataBundle, Modality, TensorSplit
from latefusion.methods import build_method
from latefusion.pipeline import method_config
from latefusion.train import autocast, build_optimizer, train

SHAPES = {
    # name: (modalities as (name, kind, shape, encoder), classes, model overrides)
    "small": ([("a", "vector", (64,), "mlp"), ("b", "vector", (64,), "mlp")], 8, ["model.feature_dim=64"]),
    "vggsound": ([("audio", "spectrogram", (1, 257, 454), "resnet18"), ("visual", "frames", (3, 3, 224, 224), "resnet18")], 309,
                 ["model.feature_dim=512", "optim.name=sgd"]),
}
METHODS = ["naive", "umt (live teachers)", "umt (cached features)", "gblend", "ogm_ge", "mmpareto", "mla"]


def random_bundle(shape: str, samples: int) -> DataBundle:
    modalities, classes, _ = SHAPES[shape]
    g = torch.Generator().manual_seed(0)

    def split(size: int):
        return TensorSplit({name: torch.randn(size, *dims, generator=g) for name, _, dims, _ in modalities},
                           torch.randint(classes, (size,), generator=g))

    # Twice the batch in train: G-Blending holds a slice of train out and must still fill a batch.
    splits = {"train": split(2 * samples), "val": split(samples), "test": split(samples)}
    return DataBundle(name=f"bench-{shape}", modalities=[Modality(n, k, s) for n, k, s, _ in modalities], num_classes=classes,
                      encoders={n: {"name": e} for n, _, _, e in modalities}, splits=splits)


def time_steps(method, model, batch, device, precision, steps: int, warmup: int) -> float:
    params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    optimizer = build_optimizer(params, method.config)
    inputs, labels = batch
    model.train(), method.train()
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(method.steps_per_batch):
            with autocast(device, precision):
                loss, _ = method.training_loss(model, inputs, labels)
            optimizer.zero_grad(set_to_none=True)
            method.backward(model, loss)
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    args = parser.parse_args()

    overrides = [*SHAPES[args.shape][2], f"data.batch_size={args.batch}", f"data.eval_batch_size={args.batch}",
                 f"train.device={args.device}", "train.progress=false", "train.epochs=1"]
    base = resolve_config(None, overrides)
    bundle = random_bundle(args.shape, args.batch)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    with tempfile.TemporaryDirectory() as tmp:
        teachers = {}
        for m in bundle.modality_names:  # real uni-modal runs (one epoch on the random batch) as UMT's teachers
            teachers[m] = str(Path(tmp) / f"unimodal-{m}")
            train(method_config(base, "unimodal", {"modality": m}), teachers[m], bundle=bundle)
        batch = bundle.splits["train"].__getitems__(list(range(args.batch)))
        rows = []
        for label in args.methods:
            name = label.split()[0]
            options = {"teachers": teachers, "teacher_cache": "auto" if "cached" in label else "off"} if name == "umt" else {}
            method = build_method(method_config(base, name, options), bundle.spec).to(device)
            model = method.build_model().to(device)
            if device.type == "cuda":
                model.to(memory_format=torch.channels_last)
            split = method.train_split(bundle.splits["train"])
            inputs, labels = split.__getitems__(list(range(args.batch)))
            on_device = ({k: v.to(device) for k, v in inputs.items()}, labels.to(device))
            seconds = time_steps(method, model, on_device, device, base.train.precision, args.steps, args.warmup)
            rows.append((label, seconds))
    naive = dict(rows).get("naive")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"shape {args.shape}, batch {args.batch}, device {device_name}, torch {torch.__version__}, median of {args.steps} steps\n")
    print("| method | ms/step | samples/s | x naive |\n|---|---:|---:|---:|")
    for label, seconds in rows:
        ratio = f"{seconds / naive:.2f}" if naive else "-"
        print(f"| {label} | {seconds * 1000:.1f} | {args.batch / seconds:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
