"""`latefusion report RUN_DIR...`: report.html and report.md from `latefusion demo` output folders.

report.html is one self-contained file (figures embedded as PNG data, no external CSS, scripts or
fonts), so it opens offline in any browser. report.md holds the same text and tables; its figures
are PNG files in report-figures/ beside it, named by their content (accuracy-<hash>.png), so a
report.md only ever points at its own figures.

The three are written as a set (publish): the figures first, under new names (their content), so
they replace nothing the old report.md shows; then report.html and report.md as one set (staged,
committed by a journal, renamed; a kill leaves the old pair, or a committed new one that the next
write finishes); a write that fails before its commit (a full disk, an interrupt) undoes what was
written before it; the figures no report.md shows any more are removed only after the new report.md
is in place. So report.md shows its own figures, old or new, never a mix; report.html embeds its
figures and cannot mix them at all.

Names that come from the data (modalities, classes, the data set) are shown literally: escaped
for HTML in report.html, for HTML and Markdown in report.md, and drawn without mathtext.

A summary names its runs by key; the report reads a key's run folder only inside the summary's
own folder (summary.run_folder_in), whatever the key says.

Each RUN_DIR is one seed of the same data set; a folder holding seed-K subfolders (what
`latefusion demo --seeds N` writes) stands for all of them. The numbers are aggregated with
seeds.aggregate_summaries, the function that writes the several-seed summary.json, so the report
and summary.json cannot disagree. Read top to bottom:

  find the seed folders -> load each summary and its run folders -> aggregate -> figures
  -> the sections (comparison, laziness, curves, guide, reproduction) as HTML and Markdown
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RunFolderError
from .figures import (accuracy_figure, confusion_figure, curves_figure, distill_figure, laziness_figure, method_style,
                      modality_accuracy_figure, probe_gap_figure, probe_style)
from .guide import warning_text
from .stats import p_text
from .runs import RunDir
from .seeds import aggregate_summaries, seed_folders
from .storage import atomic_write_bytes, complete_file_set, pending_file_set, read_json, write_file_set
from .summary import run_folder_in
from .version import __version__

FIGURES_FOLDER = "report-figures"


@dataclass
class Run:
    path: Path
    config_text: str
    result: dict[str, Any]
    history: list[dict[str, Any]]  # metrics.jsonl; empty for methods that do not train (UME)


@dataclass
class Seed:
    label: str
    path: Path
    summary: dict[str, Any]
    runs: dict[str, Run]  # by summary key: "unimodal:a", "naive", ...
    train_seed: int


@dataclass
class Report:
    seeds: list[Seed]
    aggregate: dict[str, Any]  # seeds.aggregate_summaries
    num_classes: int
    class_names: list[str] | None = None

    @property
    def modalities(self) -> list[str]:
        return self.aggregate["modalities"]

    @property
    def several(self) -> bool:
        return len(self.seeds) > 1


# ---------------------------------------------------------------------------------------- loading

def find_seed_folders(paths: list[Path]) -> list[tuple[str, Path]]:
    found = []
    for path in map(Path, paths):
        if subfolders := seed_folders(path):
            found += subfolders
        elif (path / "summary.json").is_file():
            found.append(path)
        else:
            raise RunFolderError(f"{path} is not a `latefusion demo` output folder: it holds neither summary.json nor seed-K subfolders")
    labels = [p.name for p in found]
    if len(set(labels)) < len(labels):  # e.g. a/demo and b/demo: the full paths tell them apart
        labels = [str(p) for p in found]
    return list(zip(labels, found))


def read_history(run: RunDir) -> list[dict[str, Any]]:
    if not run.metrics_file.is_file():
        return []
    return [json.loads(line) for line in run.metrics_file.read_text().splitlines() if line.strip()]


def load_seed(label: str, path: Path) -> Seed:
    summary = read_json(path / "summary.json")
    if "methods" not in summary:
        raise RunFolderError(f"{path / 'summary.json'} is not a one-seed demo summary (it has no 'methods'); "
                         "give the seed folders, or the folder that holds them")
    runs = {}
    for key in summary["methods"]:
        run = RunDir(run_folder_in(path, key))  # a key never leads out of this folder
        runs[key] = Run(run.path, run.config_file.read_text(), run.result(), read_history(run))
    train_seed = RunDir(next(iter(runs.values())).path).config().train.seed
    return Seed(label, path, summary, runs, train_seed)


def collect(paths: list[Path]) -> Report:
    seeds = [load_seed(label, path) for label, path in find_seed_folders(paths)]
    aggregate = aggregate_summaries({s.label: s.summary for s in seeds}, folders={s.label: s.path for s in seeds})
    spec = RunDir(next(iter(seeds[0].runs.values())).path).spec()
    return Report(seeds, aggregate, spec.num_classes, spec.class_names)


# -------------------------------------------------------------------------------------- numbers

def percent(mean: float, std: float, several: bool) -> str:
    return f"{mean * 100:.1f} ± {std * 100:.1f}" if several else f"{mean * 100:.1f}"


def points(value: float) -> str:
    return f"{value * 100:+.1f}"


def per_seed(report: Report, section: str, *keys: str) -> list[float]:
    values = []
    for seed in report.seeds:
        node = seed.summary[section]
        for key in keys:
            node = node[key]
        values.append(node)
    return values


def guide_counts(report: Report) -> Counter:
    return Counter(report.aggregate["guide_choices"].values())


# ------------------------------------------------------------------------------------- escaping

MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]$|#~!])")


def md(text: str) -> str:
    """Text shown literally in Markdown: HTML special characters as entities (a name like
    `<script>` stays text), Markdown's own (emphasis, links, code, math `$`, table pipes) backslashed."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))


def fence(text: str) -> str:
    """A fenced code block that `text` cannot close: the fence is longer than any backtick run in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}yaml\n{text}\n{ticks}"


# --------------------------------------------------------------------------------------- tables

@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    keys: list[str]  # one per row, e.g. the method; HTML rows carry it as data-key
    align: str = ""  # per column, "l" (text) or "r" (numbers); default: the first column l, the rest r
    highlight: int | None = None  # the row to set in bold
    swatches: list[str] | None = None  # a colour per row, shown before the first cell in HTML

    def alignment(self) -> str:
        return self.align or "l" + "r" * (len(self.header) - 1)

    def markdown(self, escape: bool = True) -> str:
        """Markdown table; `escape=False` (for a terminal) escapes only the table's pipes."""
        def cells(row, bold=False):
            row = [md(c) if escape else c.replace("|", "\\|") for c in row]
            return "| " + " | ".join(f"**{c}**" if bold and c else c for c in row) + " |"
        lines = [cells(self.header), "|" + "".join("---:|" if a == "r" else "---|" for a in self.alignment())]
        lines += [cells(row, i == self.highlight) for i, row in enumerate(self.rows)]
        return "\n".join(lines)

    def html(self, caption: str = "") -> str:
        css = {"l": ' class="l"', "r": ""}
        align = self.alignment()
        head = "".join(f'<th scope="col"{css[a]}>{html.escape(h)}</th>' for h, a in zip(self.header, align))
        body = []
        for i, (key, row) in enumerate(zip(self.keys, self.rows)):
            swatch = f'<span class="swatch" style="background:{self.swatches[i]}"></span>' if self.swatches else ""
            first = f'<th scope="row">{swatch}{html.escape(row[0])}</th>'
            rest = "".join(f"<td{css[a]}>{html.escape(c)}</td>" for c, a in zip(row[1:], align[1:]))
            best = ' class="best"' if i == self.highlight else ""
            body.append(f'<tr data-key="{html.escape(key)}"{best}>{first}{rest}</tr>')
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def comparison_table(report: Report) -> Table:
    mean, std = report.aggregate["mean"]["methods"], report.aggregate["std"]["methods"]
    keys = list(mean)
    header = ["Method", "Validation accuracy (%)", "Test accuracy (%)", "Validation macro-F1 (%)", "Test macro-F1 (%)"]

    def score(k: str, metric: str) -> str:  # summaries from before macro-F1 was recorded lack it
        return percent(mean[k][metric], std[k][metric], report.several) if metric in mean[k] else "–"

    rows = [[method_style(k, report.modalities).label] + [score(k, m) for m in ("val_acc", "test_acc", "val_macro_f1", "test_macro_f1")]
            for k in keys]
    if "naive" in mean:
        header.append("Test vs naive (points)")
        for row, k in zip(rows, keys):
            row.append("–" if k == "naive" else points(mean[k]["test_acc"] - mean["naive"]["test_acc"]))
    best = max(range(len(keys)), key=lambda i: mean[keys[i]]["test_acc"])
    return Table(header, rows, keys, highlight=best, swatches=[method_style(k, report.modalities).color for k in keys])


def modality_table(report: Report) -> Table | None:
    """Each joint model's test accuracy from each modality's share of its scores, and the imbalance
    (best minus worst modality); None when no run recorded them."""
    mean, std = report.aggregate["mean"]["methods"], report.aggregate["std"]["methods"]
    keys = [k for k in mean if "test_acc_by_modality" in mean[k]]
    if not keys:
        return None
    rows = [[method_style(k, report.modalities).label]
            + [percent(mean[k]["test_acc_by_modality"][m], std[k]["test_acc_by_modality"][m], report.several) for m in report.modalities]
            + [percent(mean[k]["test_modality_imbalance"], std[k]["test_modality_imbalance"], report.several)] for k in keys]
    return Table(["Joint model"] + [f"Share of {m}, test (%)" for m in report.modalities] + ["Imbalance (points)"], rows, keys,
                 swatches=[method_style(k, report.modalities).color for k in keys])


MODALITY_CAPTION = ("Each joint model's test accuracy when it predicts from one modality's share of its scores alone "
                    "(for late fusion: the fused head's logits from that modality's features), and the imbalance: the "
                    "best modality's accuracy minus the worst's. A large imbalance with a weak share is how laziness "
                    "looks from the outside; the linear probes above measure it inside the encoders.")


def probe_table(report: Report) -> Table:
    mean, std = report.aggregate["mean"]["probe"], report.aggregate["std"]["probe"]
    keys = list(mean)
    rows = [[probe_style(k).label] + [percent(mean[k][m], std[k][m], report.several) for m in report.modalities] for k in keys]
    return Table(["Encoder trained by"] + [f"Modality {m} (%)" for m in report.modalities], rows, keys,
                 swatches=[probe_style(k).color for k in keys])


def p_value(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-4 else "< 0.0001"


def paired_cell(test: dict[str, Any] | None) -> str:
    """"right alone: first / second, p" of a paired comparison in a verdict's evidence."""
    if not test:
        return "–"
    return f"{test['first_only']} / {test['second_only']}, {p_text(test['p_value'])}"


def evidence_table(report: Report) -> Table:
    """The guide's numbers per seed, all on the validation split: the accuracies, the paired tests
    (UMT vs UME when a UMT run was compared, naive vs UME), the probe gaps and the verdict."""
    with_umt = any("umt_vs_ume" in s.summary["guide"]["evidence"] for s in report.seeds)
    header = ["Seed", "Naive", "UME"] + (["UMT", "UMT vs UME: right alone, p"] if with_umt else [])
    header += ["Naive vs UME: right alone, p"] + [f"Probe gap {m}" for m in report.modalities] + ["Verdict"]
    rows = []
    for seed in report.seeds:
        guide = seed.summary["guide"]
        e = guide["evidence"]
        row = [seed.label, f"{e['val_acc']['naive'] * 100:.1f}", f"{e['val_acc']['ume'] * 100:.1f}"]
        if with_umt:
            row += [f"{e['val_acc']['umt'] * 100:.1f}" if "umt" in e["val_acc"] else "–", paired_cell(e.get("umt_vs_ume"))]
        rows.append(row + [paired_cell(e.get("naive_vs_ume"))] + [points(e["probe_gap"][m]) for m in report.modalities]
                    + [guide["verdict"].upper()])
    return Table(header, rows, [s.label for s in report.seeds], align="l" + "r" * (len(header) - 2) + "l")


def runs_table(report: Report) -> Table:
    rows, keys = [], []
    for seed in report.seeds:
        for key, run in seed.runs.items():
            r = run.result
            epochs = f"{r['epochs_run']} (best {r['best_epoch'] + 1})" if r["epochs_run"] else "– (no training)"
            rows.append([f"{seed.label}/{run.path.name}", method_style(key, report.modalities).label,
                         epochs, f"{r['wall_time_s']:.1f}", r["environment"]["device"]])
            keys.append(f"{seed.label}/{key}")
    return Table(["Run folder", "Method", "Epochs", "Wall time (s)", "Device"], rows, keys, align="llrrl")


def environment_table(report: Report) -> Table:
    """Versions and machine; a value shared by every run is shown once."""
    runs = [run for seed in report.seeds for run in seed.runs.values()]
    rows = []
    for field in ("latefusion", "torch", "python", "platform", "device", "command"):
        values = list(dict.fromkeys(run.result["environment"].get(field, "?") for run in runs))
        rows.append([field, " ; ".join(values)])
    return Table(["Field", "Value (one for all runs, else each value found)"], rows, [r[0] for r in rows], align="ll")


# ------------------------------------------------------------------------------------ the words

def header_facts(report: Report) -> list[str]:
    first = next(iter(report.seeds[0].runs.values())).result
    seeds = ", ".join(f"{s.label}: train.seed {s.train_seed}" for s in report.seeds)
    return [
        f"Data set {report.aggregate['dataset']}: modalities {', '.join(report.modalities)}; "
        f"{report.num_classes} classes; {first['n_val']} validation and {first['n_test']} test samples.",
        f"{len(report.seeds)} seed{'s' if report.several else ''} ({seeds}); "
        + ("figures are mean ± one standard deviation over seeds." if report.several else "one run per method."),
    ]


def comparison_words(report: Report) -> str:
    mean = report.aggregate["mean"]["methods"]
    best = max(mean, key=lambda k: mean[k]["test_acc"])
    words = f"Best test accuracy: {method_style(best, report.modalities).label} ({mean[best]['test_acc'] * 100:.1f}%)"
    if "naive" in mean and best != "naive":
        words += f", {(mean[best]['test_acc'] - mean['naive']['test_acc']) * 100:.1f} points above naive late fusion"
    return words + (". Each model is the epoch with the best validation accuracy; the test split is evaluated once, at the end."
                    " UME trains nothing itself: it averages the uni-modal models' predictions.")


def laziness_words(report: Report) -> str:
    probe = report.aggregate["mean"]["probe"]
    if "unimodal" not in probe or "naive" not in probe:
        return ""
    gaps = ", ".join(f"{m}: {(probe['unimodal'][m] - probe['naive'][m]) * 100:.1f} points" for m in report.modalities)
    return ("Each trained encoder is frozen and a fresh linear classifier is fitted on its features: the probe says how "
            "much of its own modality the encoder has learnt. An encoder trained alone is the reference; a fusion "
            "encoder that probes below it was left lazy by joint training. Uni-modal minus naive-fusion probe "
            f"(test): {gaps}.")


def verdict_of(report: Report) -> dict[str, Any]:
    """The verdict the report opens with: the one seed's, or the one over the seeds."""
    if report.several and (pooled := report.aggregate.get("guide_pooled")):
        return pooled
    return report.seeds[0].summary["guide"]


def verdict_words(report: Report) -> list[str]:
    """The verdict in a few sentences: the answer with its evidence, how the seeds voted, and how it
    stands against the test accuracies in the table beneath it."""
    verdict = verdict_of(report)
    words = [verdict["headline"]]
    if report.several:
        counts = guide_counts(report)
        words.append("Seed by seed: " + ", ".join(f"{c.upper()} in {n}" for c, n in counts.most_common()) + ".")
    mean = report.aggregate["mean"]["methods"]
    chosen = verdict["choice"]
    best = max(mean, key=lambda k: mean[k]["test_acc"])
    if chosen in mean and best != chosen:
        label = lambda k: method_style(k, report.modalities).label  # noqa: E731
        words.append(f"On test, {label(best)} scores {mean[best]['test_acc'] * 100:.1f}% against {mean[chosen]['test_acc'] * 100:.1f}% "
                     f"for {label(chosen)}: the guide decides on the validation split only (the test split is kept for the final "
                     "estimate), so it can differ from the test table where the two splits disagree within chance"
                     + (" or where the best method is neither UME nor UMT, which the guide chooses between." if best not in ("ume", "umt")
                        else "."))
    return words


GUIDE_RULE = (
    "How it decides (validation split only; the test split is never read). First, whether the runs can support a "
    "verdict at all: it is \"inconclusive\", with the reason and the next step, when every candidate model is near "
    "chance, when a model scores far below a linear probe of its own encoder (it did not learn what its features "
    "hold), when the models had too few optimiser steps, or when the validation split is too small for the gap in "
    "question. Then, with a trained UMT run, the verdict is model selection: whichever of UMT and UME is ahead on "
    "validation by more than half a point; within that margin, the declared preference (UMT by default: at least as "
    "good as UME on test in every case of the guide's benchmark; `latefusion guide --prefer ume` for the cheaper UME). Without a "
    "UMT run, naive late fusion stands in for joint training: it can use features only the combination of "
    "modalities holds (paired features) and UME cannot, so naive fusion beating UME beyond chance (exact McNemar "
    "test on the samples only one of them gets right, p < 0.05) means UMT. The probe gaps (uni-modal minus naive "
    "encoder) show how much laziness there is to recover; they explain the verdict but do not decide it."
)

EVIDENCE_CAPTION = ("All numbers on the validation split. Accuracy (%) of naive fusion, UME (and UMT); \"right alone\": samples "
                    "the first model gets right and the second wrong, then the reverse; p: exact McNemar test on those counts; "
                    "probe gap: uni-modal minus naive-fusion encoder's linear probe, in points (Figure {probe_gap} draws these gaps).")

REPRODUCE = (
    "Each run is reproduced by `latefusion train --config RUN_FOLDER/config.yaml --out NEW_FOLDER` "
    "(UME and UMT read the uni-modal runs their config names); the whole demo by the command below."
)

# The figures in the order they are numbered; a figure without data (no UMT run: no distillation
# losses) is left out and the rest numbered on.
FIGURE_ORDER = ("accuracy", "confusion", "laziness", "probe_gap", "curves", "modalities", "distill")

CAPTIONS = {
    "accuracy": "Validation (hollow) and test (filled) accuracy per method{spread}. The number is the mean test accuracy.",
    "confusion": "Test confusion matrix per method{sum}: rows are the true class, each row in percent of its samples, "
                 "so the diagonal is each class's recall.",
    "laziness": "The laziness picture: linear-probe test accuracy of each modality's encoder, by the method that "
                "trained it{spread}. A fusion encoder below the uni-modal one has not learnt all of its modality.",
    "probe_gap": "Probe gap per modality on the validation split, the split the guide reads (its evidence table shows "
                 "the naive gaps): uni-modal encoder minus each fusion method's encoder, in points{gap_spread}. "
                 "Above zero, joint training left that encoder lazy.",
    "curves": "Training curves per method{band}. The training loss is each method's own objective (for UMT, "
              "cross-entropy plus distillation), so its level is not comparable across methods; its trend is. "
              "A star marks the epoch whose weights each run kept (best validation accuracy). "
              "UME does not train and has no curve.",
    "modalities": "Each joint model's validation accuracy from each modality's own share of its scores, per "
                  "epoch{band}: the laziness signature over training (a modality whose line stays low is left to the "
                  "other). The test accuracies and their spread (best minus worst modality) are in the comparison table.",
    "distill": "UMT's distillation losses per epoch (mean squared distance of each student encoder's features to "
               "its uni-modal teacher's){band}, training split.",
}

ALT = {
    "accuracy": "Dot plot of validation and test accuracy for each method",
    "confusion": "Heat maps of each method's test confusion matrix",
    "laziness": "Grouped bar chart of linear-probe accuracy per modality for each method's encoder",
    "probe_gap": "Bar chart of the validation probe gap per modality for each fusion method's encoder",
    "curves": "Line charts of training loss and validation accuracy per epoch for each method, best epochs starred",
    "modalities": "Line chart of each joint model's per-modality validation accuracy per epoch",
    "distill": "Line chart of UMT's distillation loss per modality and epoch",
}


def figure_numbers(names) -> dict[str, int]:
    return {name: i for i, name in enumerate((n for n in FIGURE_ORDER if n in names), 1)}


def caption(report: Report, name: str, numbers: dict[str, int] | None = None) -> str:
    numbers = numbers or figure_numbers(FIGURE_ORDER)
    several = report.several
    text = CAPTIONS[name].format(
        spread="; mean ± one standard deviation over seeds, dots are single seeds" if several else "",
        band=": mean over seeds, the band spans the lowest to the highest seed" if several else "",
        sum=f", summed over the {len(report.seeds)} seeds" if several else "",
        gap_spread=("; mean ± one standard deviation of the per-seed gaps, dots are single seeds" if several
                    else "; one seed, so no error bars: the spread needs several seeds (`latefusion demo --seeds N`)"))
    return f"Figure {numbers[name]}. {text}" if name in numbers else text


def evidence_caption(numbers: dict[str, int]) -> str:
    return EVIDENCE_CAPTION.format(probe_gap=numbers.get("probe_gap", "–"))


# -------------------------------------------------------------------------------------- figures

def probe_gaps(report: Report, split: str = "val") -> dict[str, dict[str, list[float]]]:
    """Uni-modal minus each fusion method's encoder probe, per modality, one value per seed, on `split`:
    summary.json's probe_gap; a summary from before it holds only the guide's naive gaps (validation)."""
    per_seed_gaps = []
    for seed in report.seeds:
        gaps = seed.summary.get("probe_gap", {}).get(split)
        if gaps is None and split == "val":
            gaps = {"naive": seed.summary["guide"]["evidence"]["probe_gap"]}
        per_seed_gaps.append(gaps or {})
    sources = [k for k in per_seed_gaps[0] if all(k in g for g in per_seed_gaps)]
    return {k: {m: [g[k][m] for g in per_seed_gaps] for m in report.modalities} for k in sources}


def distill_histories(report: Report, histories: dict[str, list[list[dict]]]) -> dict[str, list[list[dict]]]:
    return {k: runs for k, runs in histories.items()
            if all(any(c.startswith("train_distill_") for c in h[0]) for h in runs)}


def confusions(report: Report) -> dict[str, list[list[int]]]:
    """Each method's test confusion matrix, summed over seeds (result.json `test_confusion`)."""
    found = {}
    for key in report.aggregate["mean"]["methods"]:
        matrices = [s.runs[key].result.get("test_confusion") for s in report.seeds]
        if all(matrices):
            found[key] = [[sum(m[t][p] for m in matrices) for p in range(len(matrices[0]))] for t in range(len(matrices[0]))]
    return found


def draw_figures(report: Report) -> dict[str, bytes]:
    methods = report.aggregate["mean"]["methods"]
    probe = report.aggregate["mean"]["probe"]
    histories = {k: [s.runs[k].history for s in report.seeds] for k in methods if all(s.runs[k].history for s in report.seeds)}
    best_epochs = {k: [s.runs[k].result["best_epoch"] for s in report.seeds] for k in histories}
    figures = {
        "accuracy": accuracy_figure({k: per_seed(report, "methods", k, "val_acc") for k in methods},
                                    {k: per_seed(report, "methods", k, "test_acc") for k in methods}, report.modalities),
        "laziness": laziness_figure({k: {m: per_seed(report, "probe", k, m) for m in report.modalities} for k in probe},
                                    report.modalities, 1 / report.num_classes),
        "curves": curves_figure(histories, report.modalities, best_epochs),
    }
    if matrices := confusions(report):
        figures["confusion"] = confusion_figure(matrices, report.modalities, report.class_names)
    if gaps := probe_gaps(report, "val"):
        figures["probe_gap"] = probe_gap_figure(gaps, report.modalities)
    if distilled := distill_histories(report, histories):
        figures["distill"] = distill_figure(distilled, report.modalities)
    if joint := {k: h for k, h in histories.items() if all("val_acc_by_modality" in run[0] for run in h)}:
        figures["modalities"] = modality_accuracy_figure(joint, report.modalities)
    return {name: figures[name] for name in FIGURE_ORDER if name in figures}


# ----------------------------------------------------------------------------------------- HTML

CSS = """
:root { --ink: #1c1c1c; --muted: #5a5a5a; --rule: #d5d5d5; --soft: #f5f6f8; --accent: #0072B2; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--ink);
  font: 15px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 44px 28px 72px; }
header { border-bottom: 2px solid var(--ink); padding-bottom: 14px; margin-bottom: 8px; }
.kicker { text-transform: uppercase; letter-spacing: .08em; font-size: .75rem; color: var(--muted); margin: 0; }
h1 { font-size: 1.75rem; line-height: 1.25; margin: .2rem 0 .5rem; letter-spacing: -.01em; }
header p { margin: .15rem 0; color: var(--muted); font-size: .93rem; }
nav { font-size: .88rem; margin: 10px 0 0; color: var(--muted); }
nav a { color: var(--accent); text-decoration: none; margin-right: 1.1em; }
h2 { font-size: 1.2rem; margin: 2.6rem 0 .7rem; padding-bottom: .3rem; border-bottom: 1px solid var(--rule); }
h2 .n { color: var(--muted); font-weight: 500; margin-right: .45em; }
h3 { font-size: 1rem; margin: 1.6rem 0 .4rem; }
p { margin: .6rem 0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: .9rem 0; font-size: .92rem; font-variant-numeric: tabular-nums; }
caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: .85rem; padding-top: .4rem; }
thead th { border-top: 1.6px solid var(--ink); border-bottom: 1px solid var(--ink); font-weight: 600; vertical-align: bottom; }
tbody tr:last-child > * { border-bottom: 1.6px solid var(--ink); }
th, td { padding: .34rem .85rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { padding-left: .2rem; }
th:first-child, .l { text-align: left; }
thead th { white-space: normal; }
td.l { white-space: normal; overflow-wrap: anywhere; }
tbody th { font-weight: 400; }
tr.best > * { font-weight: 650; }
.swatch { display: inline-block; width: .72em; height: .72em; border-radius: 2px; margin-right: .5em; vertical-align: baseline; }
figure { margin: 1.4rem 0; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { color: var(--muted); font-size: .88rem; margin-top: .5rem; }
.verdict { border-left: 4px solid var(--accent); background: var(--soft); padding: .85rem 1.15rem; border-radius: 0 6px 6px 0; }
.verdict .choice { font-size: 1.3rem; font-weight: 650; margin: 0 0 .3rem; }
#verdict { margin: 1.4rem 0 0; }
#verdict .kicker { margin-bottom: .1rem; }
.warnings { margin: .2rem 0 .4rem; padding-left: 1.2rem; }
blockquote { margin: .6rem 0; padding: 0 0 0 .9rem; border-left: 3px solid var(--rule); color: #333; }
.small { font-size: .88rem; color: var(--muted); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: .84rem; }
pre { background: var(--soft); padding: .7rem .9rem; overflow-x: auto; border-radius: 6px; line-height: 1.45; }
details { margin: .35rem 0; }
details summary { cursor: pointer; color: var(--accent); }
footer { margin-top: 3rem; padding-top: .8rem; border-top: 1px solid var(--rule); color: var(--muted); font-size: .82rem; }
@media print { main { max-width: none; padding: 0; } details { display: none; } }
"""


def esc(text: str) -> str:
    """Escape for HTML, then show `backticked` spans as code."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def figure_html(report: Report, name: str, figures: dict[str, bytes]) -> str:
    if name not in figures:
        return ""
    data = base64.b64encode(figures[name]).decode("ascii")
    return (f'<figure id="fig-{name}"><img src="data:image/png;base64,{data}" alt="{html.escape(ALT[name])}">'
            f"<figcaption>{esc(caption(report, name, figure_numbers(figures)))}</figcaption></figure>")


def section(number: int, anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2><span class="n">{number}</span>{html.escape(title)}</h2>{body}</section>'


PROBE_CAPTION = "Linear-probe test accuracy of each frozen encoder (test split)."


def verdict_label(report: Report) -> str:
    verdict = verdict_of(report)
    return (f"Inconclusive (leaning {verdict['choice'].upper()})" if verdict["verdict"] == "inconclusive"
            else f"Use {verdict['verdict'].upper()}")


def warning_lines(report: Report) -> list[str]:
    return [warning_text(w) for w in verdict_of(report).get("warnings", [])]


def verdict_html(report: Report) -> str:
    warnings = "".join(f"<li>{esc(line)}</li>" for line in warning_lines(report))
    return (f'<section id="verdict" class="verdict"><p class="kicker">The guide\'s verdict</p>'
            f'<p class="choice">{esc(verdict_label(report))}</p>'
            + "".join(f"<p>{esc(words)}</p>" for words in verdict_words(report))
            + (f'<p class="small">Warnings:</p><ul class="warnings">{warnings}</ul>' if warnings else "")
            + '<p class="small"><a href="#guide">How the guide decided, and its evidence</a></p></section>')


def render_html(report: Report, figures: dict[str, bytes], generated: str) -> str:
    dataset = report.aggregate["dataset"]
    wrap = '<div class="table-wrap">{}</div>'.format
    fig = lambda name: figure_html(report, name, figures)  # noqa: E731
    reasons = "".join(
        f"<p class=\"small\"><strong>{html.escape(s.label)}:</strong> {esc(s.summary['guide']['reason'])}</p>" if report.several
        else f"<blockquote>{esc(s.summary['guide']['reason'])}</blockquote>" for s in report.seeds)
    if report.several:
        reasons = f"<details><summary>The guide's reasoning in each seed</summary>{reasons}</details>"
    else:
        reasons = f"<p>In full:</p>{reasons}"
    configs = "".join(
        f"<details><summary>{html.escape(f'{seed.label}/{run.path.name}')}/config.yaml</summary>"
        f"<pre>{html.escape(run.config_text)}</pre></details>" for seed in report.seeds for run in seed.runs.values())
    shares = modality_table(report)
    sections = [
        section(1, "comparison", "Which method wins",
                f"<p>{esc(comparison_words(report))}</p>" + wrap(comparison_table(report).html()) + fig("accuracy") + fig("confusion")),
        section(2, "laziness", "Did each modality learn its features?",
                f"<p>{esc(laziness_words(report))}</p>" + wrap(probe_table(report).html(PROBE_CAPTION))
                + fig("laziness") + fig("probe_gap") + (wrap(shares.html(MODALITY_CAPTION)) if shares else "")),
        section(3, "curves", "Training curves", fig("curves") + fig("modalities") + fig("distill")),
        section(4, "guide", "How the guide decided",
                reasons + f"<p>{esc(GUIDE_RULE)}</p>" + wrap(evidence_table(report).html(evidence_caption(figure_numbers(figures))))),
        section(5, "reproduce", "Reproducing these runs",
                f"<p>{esc(REPRODUCE)}</p>" + wrap(runs_table(report).html()) + "<h3>Environment</h3>"
                + wrap(environment_table(report).html()) + "<h3>Configurations</h3>" + configs),
    ]
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (("verdict", "Verdict"), ("comparison", "Comparison"), ("laziness", "Laziness"),
                                                        ("curves", "Curves"), ("guide", "Guide"), ("reproduce", "Reproduce")))
    facts = "".join(f"<p>{esc(f)}</p>" for f in header_facts(report))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>latefusion report: {html.escape(dataset)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header><p class="kicker">latefusion report · uni-modal training, naive late fusion, UME and UMT</p><h1>{html.escape(dataset)}</h1>{facts}<nav>{nav}</nav></header>
{verdict_html(report)}
{''.join(sections)}
<footer>Generated {html.escape(generated)} by latefusion {html.escape(__version__)}
from {html.escape(', '.join(str(s.path) for s in report.seeds))}.</footer>
</main>
</body>
</html>
"""


# ------------------------------------------------------------------------------------- Markdown

def render_markdown(report: Report, figure_files: dict[str, str], generated: str) -> str:
    """Every text that comes from the data or the runs goes through md(); the fixed prose is ours."""
    numbers = figure_numbers(figure_files)

    def figure(name: str) -> str:
        if name not in figure_files:
            return ""
        return f"![{ALT[name]}]({figure_files[name]})\n\n*{caption(report, name, numbers)}*"

    reasons = "\n\n".join(f"- **{md(s.label)}**: {md(s.summary['guide']['reason'])}" if report.several
                          else f"> {md(s.summary['guide']['reason'])}" for s in report.seeds)
    configs = "\n\n".join(f"**{md(f'{seed.label}/{run.path.name}/config.yaml')}**:\n\n{fence(run.config_text.rstrip())}"
                          for seed in report.seeds for run in seed.runs.values())
    parts = [
        f"# latefusion report: {md(report.aggregate['dataset'])}",
        "\n".join(md(f) for f in header_facts(report)),
        f"**The guide's verdict: {md(verdict_label(report))}.** " + " ".join(md(w) for w in verdict_words(report)),
        "\n".join(f"- Warning: {md(line)}" for line in warning_lines(report)),
        "## 1 Which method wins", md(comparison_words(report)), comparison_table(report).markdown(), figure("accuracy"),
        figure("confusion"),
        "## 2 Did each modality learn its features?", md(laziness_words(report)),
        PROBE_CAPTION, probe_table(report).markdown(), figure("laziness"), figure("probe_gap"),
        *([md(MODALITY_CAPTION), shares.markdown()] if (shares := modality_table(report)) else []),
        "## 3 Training curves", figure("curves"), figure("modalities"), figure("distill"),
        "## 4 How the guide decided", reasons, GUIDE_RULE, evidence_table(report).markdown(),
        evidence_caption(numbers),
        "## 5 Reproducing these runs", REPRODUCE, runs_table(report).markdown(),
        "### Environment", environment_table(report).markdown(), "### Configurations", configs,
        f"---\n\nGenerated {md(generated)} by latefusion {md(__version__)}.",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


# ---------------------------------------------------------------------------------------- write

@dataclass
class Written:
    html: Path
    markdown: Path
    report: Report


def figure_file_name(name: str, png: bytes) -> str:
    """A figure's file is named by its content: a new figure never replaces one an older report.md shows."""
    return f"{name}-{hashlib.sha256(png).hexdigest()[:12]}.png"


def publish(out: Path, html_text: str, markdown_text: str, figures: dict[str, bytes]) -> None:
    """Write the report's files as a set. The figures first: their names are their content, so they
    land beside the old ones and replace nothing the old report.md shows. Then report.html and
    report.md together (storage.write_file_set): staged whole, committed by a journal, renamed into
    place, so that even a kill leaves the old pair or the new one (a set committed but not yet renamed
    is finished by the next write). If the write fails before its commit (a full disk, an interrupt),
    the new figures are removed too and the old report stays whole. Only after report.md is in place
    are the figures it no longer shows removed. Files honour the umask (storage), folders are made by
    mkdir, which does."""
    complete_file_set(out)  # an earlier write killed after its commit: its figures are the ones report.md shows
    created: list[Path] = []
    try:
        for file, png in figures.items():
            if not (out / file).is_file():
                atomic_write_bytes(out / file, png)
                created.append(out / file)
        write_file_set(out, {"report.html": html_text.encode(), "report.md": markdown_text.encode()})
    except BaseException:
        if not pending_file_set(out):  # not committed: the old report.md still shows the old figures
            for path in created:
                path.unlink(missing_ok=True)
        raise
    shown = {out / file for file in figures}
    for old in (out / FIGURES_FOLDER).iterdir():
        if old.suffix == ".png" and old not in shown:
            old.unlink(missing_ok=True)


def write_report(paths: list[str | Path], out: str | Path | None = None) -> Written:
    """Write report.html, report.md and report-figures/ into `out` (default: the one folder given), as a set (publish)."""
    paths = [Path(p) for p in paths]
    if out is None:
        if len(paths) != 1:
            raise RunFolderError(f"{len(paths)} folders given: name the report's folder with --out")
        out = paths[0]
    out = Path(out)
    report = collect(paths)
    figures = draw_figures(report)
    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    figure_files = {name: f"{FIGURES_FOLDER}/{figure_file_name(name, png)}" for name, png in figures.items()}
    publish(out, render_html(report, figures, generated), render_markdown(report, figure_files, generated),
            {figure_files[name]: png for name, png in figures.items()})
    return Written(out / "report.html", out / "report.md", report)


def terminal_summary(report: Report) -> str:
    """What `latefusion demo` and `latefusion report` print: the verdict first, then the two tables."""
    verdict = "\n".join([f"The guide's verdict: {verdict_label(report)}", *verdict_words(report),
                         *(f"Warning: {line}" for line in warning_lines(report))])
    return (f"{verdict}\n\n{comparison_table(report).markdown(escape=False)}\n\nLinear probe of each frozen encoder (test accuracy, %):\n\n"
            f"{probe_table(report).markdown(escape=False)}")
