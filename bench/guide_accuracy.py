"""The guide's benchmark: how good is the method it picks (UME or UMT), over cases x seeds, beside
three fixed rules (always UME, always UMT, better on validation)?

    # train every case x seed (resumable: finished runs are reused), then score and print the tables
    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/guide_accuracy.py
    # rescore the finished folders with the current guide (no training); prints the tables
    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/guide_accuracy.py --score-only

Options: --out (default /work/guide-bench-runs), --cases NAME ... (default: all), --seeds K ...
(default 0-4). Folders: OUT/<case>/seed-<k>/ (one `latefusion demo` folder per case and seed: the
uni-modal runs, naive, UME, UMT), OUT/<case>/data/seed-<k>.npz (the generated data of the
folder-read cases), OUT/records.json (every raw per-(case, seed) number the tables are made from).
The breast-cancer case needs scikit-learn (bench only: `pip install scikit-learn`); without it that
case is reported as failed and the others run. Training all 10 cases x 5 seeds took ~21 minutes on one
thread of the project's shared 2-core machine (avdigits ~2.5 min a seed, every other case under 40 s);
scoring alone takes ~20 s.

Per case and seed it runs the demo's paper set (`run_pipeline`), with the demo's seed rule
(`seed_config`: train.seed = k, and data.options.seed = k for data drawn from a seed); the cases
built here write their data deterministically from k. Scoring reads the finished folders only:

* candidates: UME and UMT (naive is recorded, for information); best = higher test accuracy;
* the guide's pick: `guide_folder(folder)["choice"]` (its leaning when its "verdict" is "inconclusive";
  those are also counted apart);
* regret = test accuracy of the best candidate minus that of the pick, in points;
* acceptable = the pick is the best, or within MARGIN_POINTS (0.5, declared before any run) of it on
  test, or not worse than it by the exact McNemar test (p >= 0.05) on the two runs' per-sample test flags;
* the fixed rules: always UME, always UMT, better on validation (ties -> UME), scored the same way.

The cases (`CASES`, each with its construction and the method that construction calls for by the
paper's principle, where it says one): the synthetic presets (60 epochs, their default) and a mix,
the embedded avdigits with `latefusion demo`'s settings, bench/umt_forms.py's bring-your-own .npz,
and five cases built from real data available offline, written as .npz files and read through
data.name=folder: the real 8x8 handwritten digits embedded in latefusion (avdigits.npz's clean
`image`: sklearn's digits), degraded as the avdigits loader degrades them or clean, and sklearn's
breast-cancer table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latefusion.config import RunConfig
from latefusion.data.avdigits import ASSET, AVDigitsOptions, degrade_image, sample_generator
from latefusion.pipeline import demo_runs, guide_folder, run_pipeline
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir
from latefusion.seeds import seed_config
from latefusion.stats import ALPHA, mcnemar_exact, mean_std

sys.path.insert(0, str(Path(__file__).parent))
from umt_forms import write_byo  # noqa: E402  (bench/ is not a package)

DEFAULT_OUT = Path("/work/guide-bench-runs")
MARGIN_POINTS = 0.5  # declared in advance: a pick this close to the best on test is acceptable
CANDIDATES = ("ume", "umt")
RULES = ("always UME", "always UMT", "better on val")
COMMON = ["train.progress=false"]

# The synthetic mix: the synthetic-paired preset with half its paired strength (1.5 instead of 3.0)
# and its hard uni-modal features as strong as in synthetic-unimodal (3.0 instead of 0.7).
MIX_OPTIONS = {"paired_strength": 1.5, "hard_strength": 3.0}
# The folder-read cases built here train with these (batch 32: 10+ optimiser steps per epoch on the smallest).
FOLDER_SETTINGS = ["data.batch_size=32", "train.epochs=30"]
SUM_SETTINGS = ["data.batch_size=32", "train.epochs=60"]  # the sum is learnt slowly: best validation epoch ~35 of 60
BYO_SETTINGS = ["train.epochs=30"]  # bench/umt_forms.py's epochs; the batch size is a new user's default (auto: 32 here)


# ---------------------------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    name: str
    construction: str
    truth: str | None  # the method the construction calls for ("ume": no paired features, "umt": paired), None: not known
    config: Callable[[int, Path], RunConfig]  # (seed, case folder) -> the seeded base config, its data written


def preset(data: str, options: dict[str, float] | None = None, settings: tuple[str, ...] = ()) -> Callable[[int, Path], RunConfig]:
    overrides = [f"data.name={data}", *(f"data.options.{k}={v}" for k, v in (options or {}).items()), *settings, *COMMON]
    return lambda seed, case_dir: seed_config(resolve_config(None, overrides), seed)


def npz_folder(write: Callable[[Path, int], None], settings: list[str]) -> Callable[[int, Path], RunConfig]:
    """A case read through data.name=folder from the .npz `write(path, seed)` makes (rewritten only if it changed)."""
    def config(seed: int, case_dir: Path) -> RunConfig:
        path = case_dir / "data" / f"seed-{seed}.npz"
        write_if_changed(path, lambda p: write(p, seed))
        return seed_config(resolve_config(None, ["data.name=folder", f"data.path={path}", *settings, *COMMON]), seed)
    return config


def write_if_changed(path: Path, write: Callable[[Path], None]) -> None:
    """Keep an existing file whose arrays are the same, so finished runs keep matching their data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(path.stem + ".new.npz")
    write(fresh)
    if path.exists():
        with np.load(path) as old, np.load(fresh) as new:
            if sorted(old.files) == sorted(new.files) and all(np.array_equal(old[k], new[k]) for k in old.files):
                fresh.unlink()
                return
    fresh.replace(path)


def random_split(n: int, rng: np.random.Generator) -> np.ndarray:
    """60 / 20 / 20 train / val / test, drawn with `rng`."""
    split = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    split[order[: round(0.2 * n)]] = "val"
    split[order[round(0.2 * n): round(0.4 * n)]] = "test"
    return split.astype(str)


def degraded_digits(seed: int, options: AVDigitsOptions = AVDigitsOptions()) -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 real 8x8 handwritten digits embedded in latefusion (avdigits.npz `image`: sklearn's
    digits), each degraded as the avdigits loader does (3x3 occlusion, noise of std 3 on 0..16), from
    `seed`: (images (N, 8, 8) float32 in [0, 1], digit labels (N,))."""
    with resources.files("latefusion.data.assets").joinpath(ASSET).open("rb") as handle, np.load(handle) as archive:
        images, labels = torch.from_numpy(archive["image"]), archive["label"].astype(np.int64)
    degraded = [degrade_image(images[i], sample_generator(seed, i, 0), options)[0] for i in range(len(images))]
    return torch.stack(degraded).numpy().astype(np.float32), labels


def digit_pairs(seed: int, same_digit: bool, train_pairings: int = 3, options: AVDigitsOptions = AVDigitsOptions()) -> dict[str, np.ndarray]:
    """Pairs of two different real digit images from one split (images split 60/20/20 by `seed`):
    each image is modality a once per pairing, its partner a different image, of the same digit when
    `same_digit`, else any. Train gets `train_pairings` pairings of its images, val and test one (so
    their samples are independent in each modality). Returns a, b (64-vectors), digit_a, digit_b, split."""
    rng = np.random.default_rng(2000 + seed)
    images, digits = degraded_digits(seed, options)
    image_split = random_split(len(digits), rng)
    columns: dict[str, list[np.ndarray]] = {key: [] for key in ("first", "second", "split")}
    for split, pairings in (("train", train_pairings), ("val", 1), ("test", 1)):
        members = np.flatnonzero(image_split == split)
        groups = [members[digits[members] == d] for d in np.unique(digits)] if same_digit else [members]
        for _ in range(pairings):
            for group in groups:
                order = rng.permutation(group)
                columns["first"].append(order)
                columns["second"].append(np.roll(order, 1))  # a cyclic shift: every partner is another image
                columns["split"].append(np.full(len(order), split))
    first, second = np.concatenate(columns["first"]), np.concatenate(columns["second"])
    return {"a": images[first].reshape(len(first), -1), "b": images[second].reshape(len(second), -1),
            "digit_a": digits[first], "digit_b": digits[second], "split": np.concatenate(columns["split"])}


CLEAN = AVDigitsOptions(image_noise=0, occlusion=0)


def digit_pair_writer(label: Callable[[np.ndarray, np.ndarray], np.ndarray], same_digit: bool,
                      options: AVDigitsOptions = AVDigitsOptions()) -> Callable[[Path, int], None]:
    """Writes `digit_pairs` as a two-modality .npz (a, b) whose label is `label(digit_a, digit_b)`."""
    def write(path: Path, seed: int) -> None:
        pairs = digit_pairs(seed, same_digit, options=options)
        np.savez(path, a=pairs["a"], b=pairs["b"], label=label(pairs["digit_a"], pairs["digit_b"]), split=pairs["split"])
    return write


def write_digit_halves(path: Path, seed: int) -> None:
    images, digits = degraded_digits(seed)
    split = random_split(len(digits), np.random.default_rng(3000 + seed))
    np.savez(path, left=images[:, :, :4].reshape(len(digits), -1), right=images[:, :, 4:].reshape(len(digits), -1),
             label=digits, split=split)


def write_breast_cancer_groups(path: Path, seed: int) -> None:
    """sklearn's breast-cancer table (569 tumours, 30 features: 10 measurements x mean/error/worst),
    split by measurement: `size` = radius, texture, perimeter, area, smoothness; `shape` = compactness,
    concavity, concave points, symmetry, fractal dimension (15 features each), standardised with the
    training split's statistics; samples split 60/20/20 by `seed`."""
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as missing:
        raise RuntimeError("the breast-cancer case needs scikit-learn (bench only): pip install scikit-learn") from missing
    table = load_breast_cancer()
    x, label = table.data.astype(np.float64), table.target
    split = random_split(len(label), np.random.default_rng(4000 + seed))
    train = x[split == "train"]
    x = ((x - train.mean(0)) / train.std(0)).astype(np.float32)
    measurement = np.arange(x.shape[1]) % 10
    np.savez(path, size=x[:, measurement < 5], shape=x[:, measurement >= 5], label=label, split=split)


CASES = [
    Case("synthetic-unimodal", "The preset (docs/synthetic.md): easy and hard uni-modal features, no paired features.",
         "ume", preset("synthetic-unimodal")),
    Case("synthetic-paired", "The preset: paired features of strength 3.0 (the label is a + b, one code per modality), "
         "weak hard features (0.7), easy features in 30% of samples.", "umt", preset("synthetic-paired")),
    Case("synthetic-mix", f"The synthetic-paired preset with {', '.join(f'{k}={v}' for k, v in MIX_OPTIONS.items())}: "
         "paired features at half the preset's strength beside strong hard uni-modal features (easy features in 30% of samples).", "umt",
         preset("synthetic-paired", MIX_OPTIONS)),
    Case("avdigits", "The embedded data set with `latefusion demo`'s settings (30 epochs, batch 64): real digit "
         "images + eSpeak spoken digits of the same class, both degraded.", None, preset("avdigits")),
    Case("byo", "bench/umt_forms.py's write_byo .npz: a strong and a weak modality (6 classes); two of them are told apart "
         "only by the product of a sign in each modality: paired, but an XOR, which no late-fusion head (its logits add "
         "over modalities) can read, so the construction does not say which method wins.", None,
         npz_folder(write_byo, BYO_SETTINGS)),
    Case("digits-halves", "Real degraded digit images cut into left and right 8x4 halves (one modality each); label = "
         "the digit.", None, npz_folder(write_digit_halves, FOLDER_SETTINGS)),
    Case("digits-same-digit", "Two different real degraded images of the same digit (conditionally independent given the "
         "label: redundant, no paired features by construction); label = the digit.", "ume",
         npz_folder(digit_pair_writer(lambda a, b: a, same_digit=True), FOLDER_SETTINGS)),
    Case("digits-sum", "Two independently drawn real clean digit images; label = digit_a + digit_b (19 classes): paired "
         "features by construction (each image alone narrows the label to 10 classes).", "umt",
         npz_folder(digit_pair_writer(lambda a, b: a + b, same_digit=False, options=CLEAN), SUM_SETTINGS)),
    Case("digits-compare", "Two independently drawn real clean digit images; label = a < b, a = b or a > b (3 classes): "
         "paired features by construction, but each image alone says much of the label.", "umt",
         npz_folder(digit_pair_writer(lambda a, b: np.sign(a - b) + 1, same_digit=False, options=CLEAN), FOLDER_SETTINGS)),
    Case("breast-cancer", "sklearn's breast-cancer table split by measurement into a size/texture and a shape group "
         "(15 standardised features each); label = malignant or benign.", None,
         npz_folder(write_breast_cancer_groups, FOLDER_SETTINGS)),
]
CASE_NAMES = [case.name for case in CASES]


# -------------------------------------------------------------------------------------------- training

def train_case_seed(case: Case, seed: int, out: Path) -> float:
    folder = out / case.name / f"seed-{seed}"
    started = time.time()
    run_pipeline(case.config(seed, out / case.name), folder, log=lambda *_: None)
    return time.time() - started


# --------------------------------------------------------------------------------------------- scoring

def score_pick(pick: str, best: str, test_acc: dict[str, float], test_correct: dict[str, np.ndarray]) -> dict[str, Any]:
    """Regret (points) and acceptability of `pick` against the best candidate on test."""
    regret = 100 * (test_acc[best] - test_acc[pick])
    best_only = int((test_correct[best] & ~test_correct[pick]).sum())
    pick_only = int((~test_correct[best] & test_correct[pick]).sum())
    p_value = mcnemar_exact(best_only, pick_only)
    return {"pick": pick, "regret": regret, "best_only": best_only, "pick_only": pick_only, "p_value": p_value,
            "acceptable": pick == best or regret <= MARGIN_POINTS or p_value >= ALPHA}


def fixed_rule_picks(val_acc: dict[str, float]) -> dict[str, str]:
    """RULES' picks; "better on val" breaks a tie towards UME (the cheaper one)."""
    return dict(zip(RULES, ("ume", "umt", "umt" if val_acc["umt"] > val_acc["ume"] else "ume")))


def score_case_seed(case: Case, seed: int, folder: Path) -> dict[str, Any]:
    runs = demo_runs(folder)
    paths = {"naive": runs["naive"], "ume": runs["ume"], "umt": runs["umt"], **{f"unimodal:{m}": p for m, p in runs["unimodal"].items()}}
    if runs["umt"] is None:
        raise RuntimeError(f"{folder} holds no finished UMT run")
    results = {key: RunDir(path).result() for key, path in paths.items()}
    val_acc = {key: r["val_acc"] for key, r in results.items()}
    test_acc = {key: r["test_acc"] for key, r in results.items()}
    test_correct = {key: RunDir(paths[key]).predictions()["test"].correct for key in CANDIDATES}
    best = max(CANDIDATES, key=lambda key: (test_acc[key], key == "ume"))  # a tie counts for UME; its regret is 0 either way
    config = RunDir(runs["naive"]).config()
    verdict = guide_folder(folder)
    guide_verdict = verdict.get("verdict", verdict["choice"])
    return {
        "case": case.name, "seed": seed, "folder": str(folder), "truth": case.truth,
        "val_acc": val_acc, "test_acc": test_acc, "n_val": results["ume"].get("n_val"), "n_test": int(len(test_correct["ume"])),
        "epochs": config.train.epochs, "batch_size": config.data.batch_size,
        "train_seconds": sum(r.get("wall_time_s", 0.0) for r in results.values()),
        "best": best,
        "guide": {**score_pick(verdict["choice"], best, test_acc, test_correct), "verdict": guide_verdict,
                  "inconclusive": guide_verdict == "inconclusive", "reason": verdict.get("reason"),
                  "warnings": verdict.get("warnings", [])},
        "rules": {rule: score_pick(pick, best, test_acc, test_correct) for rule, pick in fixed_rule_picks(val_acc).items()},
    }


# ---------------------------------------------------------------------------------------------- tables

def fraction(picks: list[dict[str, Any]]) -> str:
    return f"{sum(p['acceptable'] for p in picks)}/{len(picks)}"


def mean_regret(picks: list[dict[str, Any]]) -> str:
    return f"{sum(p['regret'] for p in picks) / len(picks):.2f}"


def pick_label(guide: dict[str, Any]) -> str:
    return f"{'~' if guide['inconclusive'] else ''}{guide['pick'].upper()}{'' if guide['acceptable'] else '*'}"


def percent(picks: list[dict[str, Any]]) -> str:
    return f"{100 * sum(p['acceptable'] for p in picks) / len(picks):.0f}% ({fraction(picks)})"


def pm(values: list[float]) -> str:
    mean, std = mean_std([100 * v for v in values])
    return f"{mean:.1f} ± {std:.1f}"


def by_case(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped = {name: [r for r in records if r["case"] == name] for name in CASE_NAMES}
    return {name: rows for name, rows in grouped.items() if rows}


def selection_table(records: list[dict[str, Any]]) -> list[str]:
    """Per case and overall: the guide's picks, acceptable count, mean regret, inconclusive count, and each rule's."""
    def scores(picks: list[dict[str, Any]], share: Callable[[list[dict[str, Any]]], str]) -> str:
        return f"{share(picks)} | {mean_regret(picks)}"

    def rule_columns(rows: list[dict[str, Any]], share: Callable[[list[dict[str, Any]]], str]) -> str:
        return " | ".join(scores([r["rules"][rule] for r in rows], share) for rule in RULES)

    lines = [
        f"Acceptable: the pick is within {MARGIN_POINTS} points of the better of UME and UMT on test, or not worse than it "
        f"by the exact McNemar test at {ALPHA} (per-sample test flags). Regret: best minus pick, test accuracy points, "
        "mean over seeds. Picks: * = not acceptable, ~ = the guide's verdict was inconclusive (its leaning is scored).", "",
        "| case | seeds | guide's pick per seed | guide acceptable | guide regret | inconclusive | "
        + " | ".join(f"{rule} acceptable | {rule} regret" for rule in RULES) + " |",
        "|---|---|---|---:|---:|---:|" + "---:|---:|" * len(RULES),
    ]
    for name, rows in by_case(records).items():
        guide = [r["guide"] for r in rows]
        lines.append(f"| {name} | {' '.join(str(r['seed']) for r in rows)} | {' '.join(pick_label(g) for g in guide)} | "
                     f"{scores(guide, fraction)} | {sum(g['inconclusive'] for g in guide)} | {rule_columns(rows, fraction)} |")
    guide = [r["guide"] for r in records]
    lines.append(f"| **all** | {len(records)} pairs | | {scores(guide, percent)} | {sum(g['inconclusive'] for g in guide)} | "
                 f"{rule_columns(records, percent)} |")
    return lines


def accuracy_table(records: list[dict[str, Any]]) -> list[str]:
    """Per case: test accuracy of naive, UME and UMT over seeds, and the construction's method against the guide's."""
    lines = ["Test accuracy (%), mean ± std over seeds. Construction: the method the data's construction calls for by the "
             "paper's principle (UME: no paired features; UMT: paired features; -: it does not say).", "",
             "| case | construction | naive | UME | UMT | UMT ahead of UME on test | guide = construction |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, rows in by_case(records).items():
        truth = rows[0]["truth"]
        agrees = f"{sum(r['guide']['pick'] == truth for r in rows)}/{len(rows)}" if truth else "-"
        lines.append(f"| {name} | {truth.upper() if truth else '-'} | {pm([r['test_acc']['naive'] for r in rows])} | "
                     f"{pm([r['test_acc']['ume'] for r in rows])} | {pm([r['test_acc']['umt'] for r in rows])} | "
                     f"{sum(r['test_acc']['umt'] > r['test_acc']['ume'] for r in rows)}/{len(rows)} | {agrees} |")
    return lines


def cases_table(records: list[dict[str, Any]]) -> list[str]:
    """Per case: its construction, the training settings and the training time (the runs' own wall times)."""
    constructions = {case.name: case.construction for case in CASES}
    lines = ["| case | construction | epochs | batch | val / test samples | training s per seed (mean) |",
             "|---|---|---:|---:|---:|---:|"]
    for name, rows in by_case(records).items():
        first = rows[0]
        lines.append(f"| {name} | {constructions[name]} | {first['epochs']} | {first['batch_size']} | "
                     f"{first['n_val']} / {first['n_test']} | {sum(r['train_seconds'] for r in rows) / len(rows):.0f} |")
    return lines


def inconclusive_list(records: list[dict[str, Any]]) -> list[str]:
    """Each inconclusive verdict's warnings, by kind."""
    found = [f"- {r['case']} seed {r['seed']}: {', '.join(w['kind'] for w in r['guide']['warnings']) or 'no warning given'}"
             for r in records if r["guide"]["inconclusive"]]
    return ["Inconclusive verdicts (warning kinds):", *found] if found else []


def tables(records: list[dict[str, Any]]) -> str:
    return "\n".join([*selection_table(records), "", *accuracy_table(records), "", *cases_table(records), "",
                      *inconclusive_list(records)])


def guide_commit() -> str | None:
    """The checkout scored with: "HEAD <hash>; guide.py <hash subject of its last change>"."""
    root = Path(__file__).resolve().parents[1]

    def last(*path: str) -> str:
        found = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%h %s", "--", *path],
                               capture_output=True, text=True, check=False)
        return found.stdout.strip()
    try:
        return f"HEAD {last()[:7]}; guide.py {last('src/latefusion/guide.py')}"
    except OSError:
        return None


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Replace the (case, seed) records scored now in `path`, keep the others."""
    kept = json.loads(path.read_text())["records"] if path.is_file() else []
    scored = {(r["case"], r["seed"]) for r in records}
    merged = [r for r in kept if (r["case"], r["seed"]) not in scored] + records
    merged.sort(key=lambda r: (CASE_NAMES.index(r["case"]) if r["case"] in CASE_NAMES else len(CASE_NAMES), r["case"], r["seed"]))
    path.write_text(json.dumps({"margin_points": MARGIN_POINTS, "alpha": ALPHA, "records": merged}, indent=1))


def score(cases: list[Case], seeds: list[int], out: Path) -> list[dict[str, Any]]:
    commit = guide_commit()
    records, unfinished = [], []
    for case in cases:
        for seed in seeds:
            folder = out / case.name / f"seed-{seed}"
            if not (folder / "summary.json").is_file():
                unfinished.append(f"{case.name} seed {seed}")
                continue
            try:
                records.append({**score_case_seed(case, seed, folder), "guide_commit": commit})
            except Exception:  # noqa: BLE001  (one failing folder is reported, the others are scored)
                print(f"scoring {case.name} seed {seed} failed:\n{traceback.format_exc()}", file=sys.stderr)
    if unfinished:
        print(f"not scored (no finished demo folder under {out}): {', '.join(unfinished)}", file=sys.stderr)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", choices=CASE_NAMES, default=CASE_NAMES, metavar="CASE")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--score-only", action="store_true", help="score the finished folders, train nothing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [case for case in CASES if case.name in args.cases]
    if not args.score_only:
        for case in cases:
            for seed in args.seeds:
                try:
                    seconds = train_case_seed(case, seed, args.out)
                    print(f"{time.strftime('%H:%M:%S')} {case.name} seed {seed}: {seconds:.0f} s", flush=True)
                except Exception:  # noqa: BLE001  (a case that fails is reported; the rest still run)
                    print(f"{time.strftime('%H:%M:%S')} {case.name} seed {seed} FAILED:\n{traceback.format_exc()}", flush=True)
    records = score(cases, args.seeds, args.out)
    if not records:
        raise SystemExit(f"no finished demo folder under {args.out} for these cases and seeds")
    write_records(args.out / "records.json", records)
    print(f"guide: {records[0]['guide_commit']}\n")
    print(tables(records), flush=True)

if __name__ == "__main__":
    main()
