"""The report's figures, drawn with matplotlib's object API (no pyplot, so no display is needed) and
returned as PNG bytes.

Colours are the Okabe-Ito palette, which stays distinguishable with the common colour-vision
deficiencies; every series also differs in marker, hatch or line style and is named in a legend,
so colour is never the only cue. Accuracies are drawn in percent.

Names come from the data (modalities, classes) and are drawn literally: every text drawn goes
through `literal`, which escapes mathtext's `$`, so a name like "a$^$b" is those four characters,
not a formula (nor a mathtext parse error). Mathtext itself stays on: the log axes' tick labels use it.
"""

from __future__ import annotations

import io
import statistics
from typing import Callable

import matplotlib
from matplotlib.figure import Figure

from .stats import mean_std
from .style import METHOD_STYLES, Style
from .summary import UNIMODAL

DPI = 160
WIDTH = 8.6  # inches; every figure has this width so that their text has one size on the page
RC = {
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.labelcolor": "#333333",
    "axes.edgecolor": "#888888",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.8,
    "xtick.color": "#555555",
    "ytick.color": "#555555",
    "legend.frameon": False,
    "savefig.facecolor": "white",
    "text.usetex": False,  # LaTeX would interpret names; mathtext only sees what `literal` leaves unescaped
}


def literal(text: str) -> str:
    """`text` as matplotlib draws it literally: `$` (mathtext's only way in) escaped."""
    return str(text).replace("$", r"\$")


# The uni-modal runs share the blues (Okabe-Ito blue, sky blue, a darker blue), one shade and line style per modality.
UNIMODAL_COLORS = ("#0072B2", "#56B4E9", "#003B5C")
UNIMODAL_LINES = ("-", "--", ":", "-.")
OTHER_COLORS = ("#E69F00", "#000000", "#F0E442")
OTHER_MARKERS = ("v", "P", "X")


def method_style(key: str, modalities: list[str]) -> Style:
    """The style a summary key is drawn in: "unimodal:<m>" or a method's name (its class declares it)."""
    name, _, modality = key.partition(":")
    if name == UNIMODAL and modality:
        i = modalities.index(modality) if modality in modalities else 0
        return Style(f"Uni-modal ({modality})", UNIMODAL_COLORS[i % len(UNIMODAL_COLORS)], "o", UNIMODAL_LINES[i % len(UNIMODAL_LINES)])
    return METHOD_STYLES.get(name) or other_style(key)


def probe_style(source: str) -> Style:
    """The style of the encoders a method trained ("unimodal" or a method's name)."""
    style = METHOD_STYLES.get(source) or other_style(source)
    return Style(f"{style.label} encoder", style.color, style.marker, style.linestyle, style.hatch)


def other_style(key: str) -> Style:
    i = sum(map(ord, key))  # stable across runs, unlike hash()
    return Style(key, OTHER_COLORS[i % len(OTHER_COLORS)], OTHER_MARKERS[i % len(OTHER_MARKERS)], hatch="xx")


def percent_mean(fractions: list[float]) -> float:
    """Mean first, then percent: the order the report's tables use, so a label never differs from them by rounding."""
    return statistics.fmean(fractions) * 100


def spread(values: list[float]) -> float:
    return mean_std(values)[1]


def to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.08)
    return buffer.getvalue()


def accuracy_figure(val: dict[str, list[float]], test: dict[str, list[float]], modalities: list[str]) -> bytes:
    """A dot plot, one row per method: validation (hollow) and test (filled) accuracy, mean and
    ± one standard deviation over seeds, each seed as a small dot."""
    keys = list(test)
    several = any(len(v) > 1 for v in test.values())
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(WIDTH, 0.5 * len(keys) + 1.1), layout="constrained")
        ax = figure.add_subplot()
        for row, key in enumerate(keys):
            style = method_style(key, modalities)
            y = len(keys) - 1 - row
            for offset, values, filled in ((0.16, val[key], False), (-0.16, test[key], True)):
                scores = [v * 100 for v in values]
                mean = percent_mean(values)
                if several:
                    ax.scatter(scores, [y + offset] * len(scores), s=10, color=style.color, alpha=0.45, linewidths=0, zorder=2)
                ax.errorbar(mean, y + offset, xerr=spread(scores) if several else None, fmt=style.marker, ms=7, capsize=3,
                            color=style.color, mfc=style.color if filled else "white", mew=1.6, zorder=3)
                if filled:  # the label right of the error bar or the rightmost seed, whichever ends later
                    right = max(mean + (spread(scores) if several else 0), max(scores))
                    ax.annotate(f"{mean:.1f}", (right, y + offset), xytext=(7, -1), textcoords="offset points",
                                va="center", fontsize=8.5, color="#333333")
        ax.set_yticks(range(len(keys)), [literal(method_style(k, modalities).label) for k in reversed(keys)])
        ax.set_ylim(-0.6, len(keys) - 0.4)
        ax.set_xlabel("accuracy (%)")
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.12)
        ax.legend(handles=[
            ax.plot([], [], "o", color="#555555", mfc="white", mew=1.6, label="validation")[0],
            ax.plot([], [], "o", color="#555555", label="test")[0],
        ], loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, handletextpad=0.3)
        return to_png(figure)


def grouped_bars(ax, values: dict[str, dict[str, list[float]]], modalities: list[str], label: Callable[[str], str],
                 signed: bool = False) -> None:
    """One group of bars per modality, one bar per source: the mean over seeds in percent or points,
    with an error bar of one standard deviation and a dot per seed when there are several seeds, and
    the mean written at the end of the bar (below it for a negative bar when `signed`)."""
    sources = list(values)
    several = any(len(v) > 1 for row in values.values() for v in row.values())
    width = 0.8 / max(len(sources), 1)
    for i, source in enumerate(sources):
        style = probe_style(source)
        xs = [g + (i - (len(sources) - 1) / 2) * width for g in range(len(modalities))]
        scores = [[v * 100 for v in values[source][m]] for m in modalities]
        means = [percent_mean(values[source][m]) for m in modalities]
        ax.bar(xs, means, width * 0.92, color=style.color, alpha=0.9, hatch=style.hatch, edgecolor="white",
               linewidth=0.6, label=literal(label(style.label)), zorder=2)
        ends = means
        if several:
            ax.errorbar(xs, means, yerr=[spread(s) for s in scores], fmt="none", ecolor="#222222", capsize=3, lw=1, zorder=3)
            for x, s in zip(xs, scores):
                ax.scatter([x] * len(s), s, s=9, color="#222222", alpha=0.55, linewidths=0, zorder=4)
            ends = [m - spread(s) if signed and m < 0 else max(m + spread(s), max(s)) for m, s in zip(means, scores)]
        for x, end, mean in zip(xs, ends, means):  # the label beyond the bar, its error bar and its seeds
            below = signed and mean < 0
            ax.annotate(f"{mean:+.1f}" if signed else f"{mean:.1f}", (x, end), xytext=(0, -3 if below else 3),
                        textcoords="offset points", ha="center", va="top" if below else "bottom", fontsize=8, color="#333333")
    ax.set_xticks(range(len(modalities)), [literal(f"modality {m}") for m in modalities])
    ax.grid(axis="x", visible=False)


def laziness_figure(probe: dict[str, dict[str, list[float]]], modalities: list[str], chance: float | None) -> bytes:
    """Linear-probe test accuracy of each modality's encoder from each probed method (grouped bars)."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(WIDTH, 3.8), layout="constrained")
        ax = figure.add_subplot()
        grouped_bars(ax, probe, modalities, lambda name: name)
        if chance is not None:
            ax.axhline(chance * 100, color="#555555", lw=1, ls=(0, (4, 3)), zorder=1, label=f"chance ({chance * 100:.1f})")
        ax.set_ylabel("linear-probe test accuracy (%)")
        ax.set_ylim(0, 108)
        ax.set_yticks(range(0, 101, 20))
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=min(len(probe) + 1, 4))
        return to_png(figure)


def curves_figure(histories: dict[str, list[list[dict]]], modalities: list[str],
                  best_epochs: dict[str, list[int]] | None = None) -> bytes:
    """Two panels: training loss and validation accuracy per epoch, one line per method (the mean
    over seeds; the band spans the lowest to the highest seed). `best_epochs` (0-based, one per seed):
    the epoch whose weights each run kept, marked with a star on the validation curve."""
    best_epochs = best_epochs or {}
    panels = (("train_loss", "training loss (log scale)", 1.0), ("val_acc", "validation accuracy (%)", 100.0))
    several = any(len(runs) > 1 for runs in histories.values())
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(WIDTH, 3.6), layout="constrained")
        axes = figure.subplots(1, 2)
        for ax, (column, title, scale) in zip(axes, panels):
            for key, runs in histories.items():
                style = method_style(key, modalities)
                epochs = max(len(h) for h in runs)
                rows = [[h[e][column] * scale for h in runs if e < len(h)] for e in range(epochs)]
                xs = list(range(1, epochs + 1))
                ax.plot(xs, [statistics.fmean(r) for r in rows], color=style.color, ls=style.linestyle, marker=style.marker,
                        ms=3.5, markevery=max(1, epochs // 10), lw=1.6, label=literal(style.label))
                if several:
                    ax.fill_between(xs, [min(r) for r in rows], [max(r) for r in rows], color=style.color, alpha=0.15, lw=0)
                if column == "val_acc":
                    marks = sorted({e for e in best_epochs.get(key, []) if 0 <= e < epochs})
                    ax.plot([e + 1 for e in marks], [statistics.fmean(rows[e]) for e in marks], "*", ms=11, color=style.color,
                            mfc="white", mew=1.4, zorder=4)
            ax.set_title(title, loc="left")
            if column == "train_loss":  # losses fall by orders of magnitude; a log axis keeps the late epochs readable
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
        handles, labels = axes[0].get_legend_handles_labels()
        if best_epochs:
            handles.append(axes[1].plot([], [], "*", ms=11, color="#555555", mfc="white", mew=1.4)[0])
            labels.append("best validation epoch (the weights kept)")
        figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4))
        return to_png(figure)


def modality_lines_figure(histories: dict[str, list[list[dict]]], modalities: list[str], value: Callable[[dict, str], float | None],
                          ylabel: str, log_scale: bool = False, percent: bool = False) -> bytes:
    """One line per method and modality over epochs, of `value(metrics row, modality)` (the mean over
    seeds; the band spans the lowest to the highest seed); a modality without values is left out."""
    several = any(len(runs) > 1 for runs in histories.values())
    scale = 100.0 if percent else 1.0
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(WIDTH, 3.4), layout="constrained")
        ax = figure.add_subplot()
        for key, runs in histories.items():
            style = method_style(key, modalities)
            for i, modality in enumerate(m for m in modalities if value(runs[0][0], m) is not None):
                epochs = max(len(h) for h in runs)
                rows = [[scale * value(h[e], modality) for h in runs if e < len(h) and value(h[e], modality) is not None] for e in range(epochs)]
                xs = [e + 1 for e in range(epochs) if rows[e]]
                rows = [r for r in rows if r]
                ax.plot(xs, [statistics.fmean(r) for r in rows], color=style.color, ls=UNIMODAL_LINES[i % len(UNIMODAL_LINES)],
                        marker="os^vD"[i % 5], ms=3.5, markevery=max(1, epochs // 10), lw=1.6,
                        label=literal(f"{style.label}: modality {modality}"))
                if several:
                    ax.fill_between(xs, [min(r) for r in rows], [max(r) for r in rows], color=style.color, alpha=0.12, lw=0)
        if log_scale:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if labels := ax.get_legend_handles_labels()[1]:
            ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=min(len(labels), 3))
        return to_png(figure)


def distill_figure(histories: dict[str, list[list[dict]]], modalities: list[str]) -> bytes:
    """UMT's distillation losses per epoch (metrics.jsonl `train_distill_<modality>`)."""
    return modality_lines_figure(histories, modalities, lambda row, m: row.get(f"train_distill_{m}"),
                                 "distillation loss (MSE to the teacher's features)", log_scale=True)


def modality_accuracy_figure(histories: dict[str, list[list[dict]]], modalities: list[str]) -> bytes:
    """Each joint model's validation accuracy from each modality's share of its scores, per epoch
    (metrics.jsonl `val_acc_by_modality`): a modality whose line stalls is the lazy one."""
    return modality_lines_figure(histories, modalities, lambda row, m: row.get("val_acc_by_modality", {}).get(m),
                                 "validation accuracy of the modality's share (%)", percent=True)


def probe_gap_figure(gaps: dict[str, dict[str, list[float]]], modalities: list[str]) -> bytes:
    """The uni-modal encoder's probe minus each fusion method's encoder's, per modality, in points
    (grouped bars). Above zero: the fusion encoder learnt less of that modality."""
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(WIDTH, 3.6), layout="constrained")
        ax = figure.add_subplot()
        grouped_bars(ax, gaps, modalities, lambda name: f"uni-modal minus {name}", signed=True)
        ax.axhline(0, color="#555555", lw=1, zorder=1)
        ax.set_ylabel("probe gap (points, validation)")
        ax.margins(y=0.18)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=min(len(gaps), 3))
        return to_png(figure)


MAX_NAMED_CLASSES = 12  # more classes than this: the axes show class numbers, not names


def confusion_figure(confusions: dict[str, list[list[int]]], modalities: list[str], class_names: list[str] | None) -> bytes:
    """One panel per method: its test confusion matrix (rows: true class, summed over seeds), each
    row in percent of that class's samples, so the diagonal is each class's recall."""
    keys = list(confusions)
    ncols = min(len(keys), 3)
    nrows = -(-len(keys) // ncols)
    n = len(next(iter(confusions.values())))
    names = class_names if class_names and n <= MAX_NAMED_CLASSES else None
    ticks = [literal(t) for t in names] if names else [str(i) for i in range(n)]
    step = max(1, n // 12)
    with matplotlib.rc_context(RC):
        side = WIDTH / ncols
        figure = Figure(figsize=(WIDTH, side * nrows * 0.95 + 0.4), layout="constrained")
        axes = figure.subplots(nrows, ncols, squeeze=False)
        image = None
        for ax, key in zip(axes.flat, keys):
            counts = confusions[key]
            rows = [[100 * c / max(sum(row), 1) for c in row] for row in counts]
            image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=100)
            if n <= 10:
                for t in range(n):
                    for p in range(n):
                        ax.text(p, t, f"{rows[t][p]:.0f}", ha="center", va="center", fontsize=7,
                                color="white" if rows[t][p] > 60 else "#333333")
            ax.set_title(literal(method_style(key, modalities).label), loc="left")
            ax.set_xticks(range(0, n, step), ticks[::step], rotation=90 if names else 0, fontsize=7.5)
            ax.set_yticks(range(0, n, step), ticks[::step], fontsize=7.5)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            ax.grid(False)
        for ax in list(axes.flat)[len(keys):]:
            ax.set_visible(False)
        if image is not None:
            figure.colorbar(image, ax=axes, shrink=0.6, label="% of the true class")
        return to_png(figure)
