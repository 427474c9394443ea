"""The report and the seeds: the report's numbers are summary.json's, every figure is a real image,
and several seeds aggregate to the mean and standard deviation of the per-seed summaries."""

import base64
import html
import io
import json
import re
from html.parser import HTMLParser

import matplotlib.image
import numpy as np
import pytest

from latefusion.cli import main
from latefusion.config import dump_config
from latefusion.resolve import resolve_config
from latefusion.figures import method_style, probe_style
from latefusion.pipeline import run_pipeline
from latefusion.summary import run_folder
from latefusion.report import FIGURES_FOLDER, figure_file_name, md, write_report
from latefusion.runs import RunDir
from latefusion.seeds import seed_config

# Every figure a one-seed demo has (it trains UMT, so its distillation losses are there too), in page order.
FIGURES = ("accuracy", "confusion", "laziness", "probe_gap", "curves", "modalities", "distill")


class ReportHTML(HTMLParser):
    """The tables (one dict per table: data-key -> cell texts) and the image sources of a report.html."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[dict[str, list[str]]] = []
        self.images: list[str] = []
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({})
        elif tag == "tr" and "data-key" in attrs:
            self.row = []
            self.tables[-1][attrs["data-key"]] = self.row
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr":
            self.row = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def markdown_row(markdown: str, label: str) -> list[str]:
    rows = [line for line in markdown.splitlines() if re.match(rf"\|\s*\**{re.escape(label)}\**\s*\|", line)]
    assert rows, f"no row {label!r} in report.md"
    return [cell.strip().strip("*") for cell in rows[0].strip("|").split("|")]


def cell(mean, std=None):
    return f"{mean * 100:.1f}" if std is None else f"{mean * 100:.1f} ± {std * 100:.1f}"


def check_png(png: bytes) -> None:
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    height, width = pixels.shape[:2]
    assert width >= 800 and height >= 300, f"figure is only {width}x{height} pixels"
    assert pixels[..., :3].std() > 0.02, "figure is blank"  # marks on white, not one flat colour


@pytest.fixture
def demo(tmp_path, tiny_config):
    run_pipeline(tiny_config(), tmp_path / "demo", log=lambda *_: None)
    return tmp_path / "demo"


def test_report_numbers_equal_summary_and_every_figure_is_present(demo, capsys):
    assert main(["report", str(demo)]) == 0
    assert f"report: {demo / 'report.html'}" in capsys.readouterr().out
    summary = json.loads((demo / "summary.json").read_text())
    text = (demo / "report.html").read_text()
    markdown = (demo / "report.md").read_text()
    page = ReportHTML(text)
    comparison, probe = page.tables[0], page.tables[1]
    modalities = summary["modalities"]

    assert list(comparison) == list(summary["methods"])
    for key, r in summary["methods"].items():
        expected = [cell(r[m]) for m in ("val_acc", "test_acc", "val_macro_f1", "test_macro_f1")]
        assert comparison[key][1:5] == expected, key
        assert markdown_row(markdown, method_style(key, modalities).label)[1:5] == expected, key
    assert list(probe) == list(summary["probe"])
    for source, row in summary["probe"].items():
        expected = [cell(row[m]) for m in modalities]
        assert probe[source][1:] == expected, source
        assert markdown_row(markdown, probe_style(source).label)[1:] == expected, source

    # Every figure: embedded in the HTML as a decodable, non-blank PNG, and the same bytes beside report.md,
    # in a file named by its content; report-figures/ holds nothing else.
    assert len(page.images) == len(FIGURES)
    linked = re.findall(rf"\]\(({FIGURES_FOLDER}/[^)]+)\)", markdown)
    assert len(linked) == len(FIGURES)
    for name, src, link in zip(FIGURES, page.images, linked):
        assert src.startswith("data:image/png;base64,"), f"figure {name} is not embedded"
        png = base64.b64decode(src.partition(",")[2], validate=True)
        check_png(png)
        assert link == f"{FIGURES_FOLDER}/{figure_file_name(name, png)}"
        assert (demo / link).read_bytes() == png
    assert len(set(page.images)) == len(FIGURES)
    assert sorted(p.name for p in (demo / FIGURES_FOLDER).iterdir()) == sorted(link.rpartition("/")[2] for link in linked)

    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r'(src|href)="(https?:|file:|//)|url\(|<script|<link', text)
    # The guide's verdict and the reproduction details are there.
    plain = html.unescape(re.sub(r"<[^>]+>", "", text))
    assert summary["guide"]["reason"] in plain and md(summary["guide"]["reason"]) in markdown
    # The verdict opens the report, before the first section, with its headline and every warning.
    verdict = summary["guide"]
    opening = plain[plain.index("The guide's verdict"):plain.index("1Which method wins")]
    label = "Inconclusive (leaning" if verdict["verdict"] == "inconclusive" else f"Use {verdict['verdict'].upper()}"
    assert label in opening and verdict["headline"] in opening
    assert all(w["message"] in opening for w in verdict["warnings"])
    for key in summary["methods"]:
        result = RunDir(demo / run_folder(key)).result()
        runs = next(table for table in page.tables if f"{demo.name}/{key}" in table)  # the reproduction table
        assert f"{result['wall_time_s']:.1f}" in runs[f"{demo.name}/{key}"]
        assert result["environment"]["command"] in plain and result["environment"]["torch"] in plain


def test_seed_rule_sets_train_seed_and_the_seed_of_drawn_data_only():
    synthetic = seed_config(resolve_config(None, ["data.name=synthetic-paired", "train.seed=7"]), 3)
    assert synthetic.train.seed == 3 and synthetic.data.options["seed"] == 3
    own = seed_config(resolve_config(None, ["data.name=folder", "data.path=somewhere"]), 3)
    assert own.train.seed == 3 and "seed" not in own.data.options


@pytest.mark.slow
def test_demo_seeds_aggregate_to_mean_and_std_of_the_seeds(tmp_path, tiny_config, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(dump_config(tiny_config()))
    out = tmp_path / "demo"
    assert main(["demo", "--config", str(config), "--seeds", "2", "--out", str(out)]) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out

    per_seed = [json.loads((out / f"seed-{k}" / "summary.json").read_text()) for k in (0, 1)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == ["seed-0", "seed-1"]
    assert summary["per_seed"] == {"seed-0": per_seed[0], "seed-1": per_seed[1]}
    assert summary["guide_choices"] == {f"seed-{k}": s["guide"]["verdict"] for k, s in enumerate(per_seed)}
    assert per_seed[0]["methods"] != per_seed[1]["methods"], "the two seeds trained the same runs"
    for k in (0, 1):
        run = RunDir(out / f"seed-{k}" / "naive").config()
        assert run.train.seed == k and run.data.options["seed"] == k

    page = ReportHTML((out / "report.html").read_text())
    for key in per_seed[0]["methods"]:
        for i, metric in enumerate(("val_acc", "test_acc")):
            values = np.array([s["methods"][key][metric] for s in per_seed])
            assert summary["mean"]["methods"][key][metric] == pytest.approx(values.mean())
            assert summary["std"]["methods"][key][metric] == pytest.approx(values.std(ddof=1))
            assert page.tables[0][key][1 + i] == cell(values.mean(), values.std(ddof=1))
    for source in per_seed[0]["probe"]:
        for m in per_seed[0]["modalities"]:
            values = np.array([s["probe"][source][m] for s in per_seed])
            assert summary["mean"]["probe"][source][m] == pytest.approx(values.mean())
            assert summary["std"]["probe"][source][m] == pytest.approx(values.std(ddof=1))
    for src in page.images:
        check_png(base64.b64decode(src.partition(",")[2]))

    # The seed folders given one by one make the same report numbers as their parent folder.
    again = write_report([out / "seed-0", out / "seed-1"], tmp_path / "again")
    assert ReportHTML(again.html.read_text()).tables[:2] == page.tables[:2]


def test_train_seeds_repeat_into_seed_folders(tmp_path, capsys):
    fast = ["--set", "data.options.train_size=200", "--set", "data.options.val_size=100", "--set", "data.options.test_size=100",
            "--set", "train.epochs=1", "--set", "train.progress=false", "--set", "method.name=naive"]
    assert main(["train", "--seeds", "2", "--out", str(tmp_path / "runs"), *fast]) == 0
    printed = json.loads(capsys.readouterr().out)
    results = [RunDir(tmp_path / "runs" / f"seed-{k}").result() for k in (0, 1)]
    assert [RunDir(tmp_path / "runs" / f"seed-{k}").config().train.seed for k in (0, 1)] == [0, 1]
    assert printed["mean"]["test_acc"] == pytest.approx(np.mean([r["test_acc"] for r in results]))
    assert printed["std"]["test_acc"] == pytest.approx(np.std([r["test_acc"] for r in results], ddof=1))
    assert json.loads((tmp_path / "runs" / "summary.json").read_text()) == printed
