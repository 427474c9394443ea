"""Training-step cost of each method, through the project's own code path, as a ratio to naive fusion,
and (`--reference`) against a plain hand-written step of the same model, in the same process.

    OMP_NUM_THREADS=1 python bench/step.py --shape small                   # synthetic-preset shapes, MLPs
    OMP_NUM_THREADS=1 python bench/step.py --shape vggsound --batch 8 --methods naive umt-live umt-cached --reference
    python bench/step.py --shape vggsound --batch 64 --device cuda --reference   # what bench/gpu_check.sh runs

A step is the training loop's own function `latefusion.train.train_step` on one batch: the method's
loss, backward, gradient clipping when configured, optimizer.step (MLA takes one step per modality per
batch, so its row is a whole batch), behind the loop's `distributed.wrap`, with the loop's device
set-up (engine.setup_device, engine.place: cuDNN autotuner, channels_last on CUDA) and autocast (bf16
on GPUs that support it). Like the loop, it reads no logged value back (no host sync per step). Inputs are random tensors of the chosen shapes, already on
the device: this times the model and the method, not the loader (bench/loader.py times that). UMT is
timed with its teachers run live and with their features read from the cache (`teacher_cache: auto`
on a split without augmentation). `--reference` (VGG-Sound shapes) adds bench/reference_step.py's
plain steps: naive, UMT with live teachers and with given teacher features.

Every row runs in this process, interleaved: each round times one step of every row in turn, so a
change of load on a shared machine hits all rows alike. Each row's figure is the median of `--rounds`
rounds, after `--warmup` untimed steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from latefusion import distributed
from latefusion.data import DataBundle, Modality, TensorSplit
from latefusion.engine import autocast, build_optimizer, place, setup_device
from latefusion.methods import TrainingContext, build_method
from latefusion.pipeline import method_config
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir
from latefusion.train import train, train_step

SHAPES = {
    # name: (modalities as (name, kind, shape, encoder), classes, model overrides)
    "small": ([("a", "vector", (64,), "mlp"), ("b", "vector", (64,), "mlp")], 8, ["model.feature_dim=64"]),
    "vggsound": ([("audio", "spectrogram", (1, 257, 454), "resnet18"), ("visual", "frames", (3, 3, 224, 224), "resnet18")], 309,
                 ["model.feature_dim=512", "optim.name=sgd"]),
}
METHODS = ["naive", "umt-live", "umt-cached", "gblend", "ogm_ge", "mmpareto", "mla"]
LABELS = {"umt-live": "umt (live teachers)", "umt-cached": "umt (cached features)"}
REFERENCES = ["naive", "umt-live", "umt-cached"]


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


def project_step(method, model, batch, device: torch.device) -> Callable[[], None]:
    """One call of the loop's train_step, set up as the loop sets it up."""
    params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    optimizer = build_optimizer(params, method.config)
    step_loss = distributed.wrap(method, model, device)
    inputs, labels = batch
    model.train(), method.train()
    return lambda: train_step(method, step_loss, model, optimizer, params, inputs, labels, 0, method.config, device)


def interleaved_medians(steps: dict[str, Callable[[], None]], device: torch.device, rounds: int, warmup: int) -> dict[str, float]:
    """Seconds per step of each row: the median over rounds that each time one step of every row."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--reference", action="store_true", help="also time bench/reference_step.py's plain steps (--shape vggsound)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.reference and args.shape != "vggsound":
        parser.error("--reference is a two-ResNet18 audio-visual step: use it with --shape vggsound")

    overrides = [*SHAPES[args.shape][2], f"data.batch_size={args.batch}", f"data.eval_batch_size={args.batch}",
                 f"train.device={args.device}", "train.progress=false", "train.epochs=1"]
    base = resolve_config(None, overrides)
    device = setup_device(base)
    bundle = random_bundle(args.shape, args.batch)
    steps: dict[str, Callable[[], None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        teachers = {}
        if any(m.startswith("umt") for m in args.methods):
            for m in bundle.modality_names:  # real uni-modal runs (one epoch on the random batch) as UMT's teachers
                teachers[m] = str(Path(tmp) / f"unimodal-{m}")
                train(method_config(base, "unimodal", {"modality": m}), teachers[m], bundle=bundle)
        for label in args.methods:
            name = label.split("-")[0]
            options = {"teachers": teachers, "teacher_cache": "auto" if label == "umt-cached" else "off"} if name == "umt" else {}
            config = method_config(base, name, options)
            method = build_method(config, bundle.spec)
            model = place(method.build_model(), device, base)
            train_set = method.prepare(model, TrainingContext(config, bundle, RunDir(Path(tmp) / label), device))
            place(method, device, base)
            inputs, labels = train_set.__getitems__(list(range(args.batch)))
            batch = ({k: v.to(device) for k, v in inputs.items()}, labels.to(device))
            steps[LABELS.get(label, label)] = project_step(method, model, batch, device)
    if args.reference:
        from reference_step import ReferenceStep  # bench/, beside this script

        inputs, labels = bundle.splits["train"].__getitems__(list(range(args.batch)))
        batch = (inputs["audio"].to(device), inputs["visual"].to(device), labels.to(device))
        layout = torch.channels_last if device.type == "cuda" and base.train.channels_last else torch.contiguous_format
        for kind in REFERENCES:
            reference = ReferenceStep(kind, batch, bundle.num_classes, device, layout, lambda: autocast(device, base.train.precision))
            steps[f"reference {LABELS.get(kind, kind)}"] = reference.step
    seconds = interleaved_medians(steps, device, args.rounds, args.warmup)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    with autocast(device, base.train.precision):
        precision = "bf16 autocast" if torch.is_autocast_enabled("cuda") else "fp32"
    layout = "channels_last" if device.type == "cuda" and base.train.channels_last else "contiguous"
    print(f"shape {args.shape}, batch {args.batch}, device {device_name}, {precision}, {layout}, torch {torch.__version__}, "
          f"median of {args.rounds} interleaved rounds\n")
    naive = seconds.get("naive")
    print("| step | ms/step | samples/s | x naive step time |\n|---|---:|---:|---:|")
    for label, s in seconds.items():
        reference_naive = seconds.get("reference naive") if label.startswith("reference") else naive
        ratio = f"{s / reference_naive:.3f}" if reference_naive else "-"
        rate = args.batch / s
        print(f"| {label} | {s * 1000:.1f} | {rate:.1f} | {ratio} |" if rate < 100 else f"| {label} | {s * 1000:.1f} | {rate:.0f} | {ratio} |")
    pairs = [(LABELS.get(k, k), f"reference {LABELS.get(k, k)}") for k in REFERENCES]
    pairs = [(ours, ref) for ours, ref in pairs if ours in seconds and ref in seconds]
    if pairs:
        print("\n| step | project samples/s / reference samples/s |\n|---|---:|")
        for ours, ref in pairs:
            print(f"| {ours} | {seconds[ref] / seconds[ours]:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "precision": precision, "layout": layout, "batch": args.batch,
                                         "shape": args.shape, "seconds_per_step": seconds}, indent=2) + "\n")


if __name__ == "__main__":
    main()
