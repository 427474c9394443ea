"""The report's integrity: names from the data shown literally (HTML, Markdown, figures), run folders
read only inside the report's folder, the files written as a set with the umask honoured, and the
metrics the field reports (macro-F1, confusion matrices, best epochs, distillation losses, probe
gaps on the guide's split) taken from the runs without change."""

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import latefusion.storage as storage
from latefusion.errors import RunFolderError
from latefusion.figures import curves_figure
from latefusion.pipeline import run_pipeline
from latefusion.report import (FIGURE_ORDER, FIGURES_FOLDER, collect, confusions, distill_histories, probe_gaps, render_markdown,
                               write_report)
from latefusion.resolve import resolve_config
from latefusion.runs import RunDir
from latefusion.summary import run_folder, run_folder_in

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def demo_once(tmp_path_factory):
    out = tmp_path_factory.mktemp("integrity") / "demo"
    config = resolve_config(None, ["data.name=synthetic-unimodal", "data.options.train_size=300", "data.options.val_size=200",
                                   "data.options.test_size=200", "train.epochs=3", "train.progress=false"])
    run_pipeline(config, out, log=lambda *_: None)
    return out


@pytest.fixture
def demo(demo_once, tmp_path):
    """A fresh copy of the one-seed demo folder, for a test to change."""
    return Path(shutil.copytree(demo_once, tmp_path / "demo"))


def report_files(folder: Path) -> dict[str, bytes]:
    files = {name: (folder / name).read_bytes() for name in ("report.html", "report.md")}
    files.update({f"{FIGURES_FOLDER}/{p.name}": p.read_bytes() for p in sorted((folder / FIGURES_FOLDER).iterdir())})
    return files


def linked_figures(markdown: str) -> list[str]:
    return re.findall(rf"\]\(({FIGURES_FOLDER}/[^)]+)\)", markdown)


# ---------------------------------------------------------------------------- 1: names literally

MODALITIES = {"a": "a$^$b", "b": "<img onerror=x>|b"}
CLASSES = ["<script>alert(1)</script>", "c$_$d", "x|y"]


def rename(node, names: dict[str, str]):
    """Modality names replaced everywhere in a summary: dict keys, list items, "unimodal:<m>" keys."""
    def name(value):
        if isinstance(value, str):
            head, sep, tail = value.partition(":")
            return f"{head}:{names[tail]}" if sep and tail in names else names.get(value, value)
        return value
    if isinstance(node, dict):
        return {name(k): rename(v, names) for k, v in node.items()}
    if isinstance(node, list):
        return [name(v) if isinstance(v, str) else rename(v, names) for v in node]
    return node


def rename_demo(demo: Path, names: dict[str, str], classes: list[str]) -> None:
    """What the demo would be had the data named its modalities and classes so."""
    summary = json.loads((demo / "summary.json").read_text())
    (demo / "summary.json").write_text(json.dumps(rename(summary, names)))
    for m, new in names.items():
        (demo / f"unimodal-{m}").rename(demo / run_folder(f"unimodal:{new}"))
    for run in demo.iterdir():
        if (run / "data.json").is_file():
            spec = json.loads((run / "data.json").read_text())
            spec["class_names"] = (classes * spec["num_classes"])[:spec["num_classes"]]
            for modality in spec["modalities"]:
                modality["name"] = names.get(modality["name"], modality["name"])
            (run / "data.json").write_text(json.dumps(spec))
        if (run / "metrics.jsonl").is_file():
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            rows = [{re.sub(r"^train_distill_(.*)$", lambda g: f"train_distill_{names.get(g[1], g[1])}", k): v for k, v in row.items()}
                    for row in rows]
            (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_names_are_shown_literally_in_html_markdown_and_figures(demo):
    rename_demo(demo, MODALITIES, CLASSES)
    written = write_report([demo])  # matplotlib would fail on "a$^$b" read as mathtext
    text, markdown = written.html.read_text(), written.markdown.read_text()
    for raw in ("<img onerror=x>", "<script>alert(1)</script>"):
        assert raw not in text and raw not in markdown
    assert html.escape(MODALITIES["b"]) in text and "Uni-modal (a$^$b)" in text
    # Markdown: HTML escaped, and the characters Markdown reads ($ for math, | for tables) backslashed.
    assert r"Uni-modal (a\$^\$b)" in markdown
    assert r"&lt;img onerror=x&gt;\|b" in markdown
    assert "a$^$b" not in markdown
    for table in re.findall(r"(?:^\|.*\n)+", markdown, flags=re.M):
        lines = table.splitlines()
        assert {unescaped_pipes(line) for line in lines} == {unescaped_pipes(lines[0])}, f"a name broke a table:\n{table}"
    # Every figure is drawn, and the class names (drawn in the confusion matrices) did not stop it.
    assert len(linked_figures(markdown)) == len(FIGURE_ORDER)
    assert collect([demo]).class_names[0] == CLASSES[0]


def test_markdown_keeps_a_config_that_holds_backticks_in_its_code_block(demo):
    report = collect([demo])
    run = next(iter(report.seeds[0].runs.values()))
    run.config_text += "# ```\n# a comment with a fence in it\n"
    markdown = render_markdown(report, {}, "now")
    block = re.search(r"^(`{4,})yaml\n(.*?)^\1$", markdown, flags=re.M | re.S)
    assert block and "a comment with a fence in it" in block[2]


# ---------------------------------------------------------------------- 2: run folders stay inside

@pytest.mark.parametrize("key", ["../outside", "ABSOLUTE", "link"])
def test_report_reads_no_run_folder_outside_its_folder(demo, tmp_path, key):
    outside = Path(shutil.copytree(demo / "naive", tmp_path / "outside"))  # a real run folder, elsewhere
    if key == "ABSOLUTE":
        key = str(outside)
    elif key == "link":
        (demo / "link").symlink_to(outside)
    summary = json.loads((demo / "summary.json").read_text())
    summary["methods"][key] = summary["methods"]["naive"]
    (demo / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(RunFolderError, match=re.escape(repr(key))):
        write_report([demo])
    assert not (demo / "report.html").exists()


def test_run_folder_in_keeps_keys_inside_the_demo_folder(tmp_path):
    assert run_folder_in(tmp_path, "unimodal:a") == tmp_path / "unimodal-a"
    for key in ("", ".", "..", "../x", "/etc", "a/../../x"):
        with pytest.raises(RunFolderError):
            run_folder_in(tmp_path, key)


# --------------------------------------------------------------------------- 3: written as a set

def change_a_result(demo: Path) -> None:
    """The next report differs in its text and its accuracy figure: naive fusion's test accuracy is now 99%."""
    summary = json.loads((demo / "summary.json").read_text())
    summary["methods"]["naive"]["test_acc"] = 0.99
    (demo / "summary.json").write_text(json.dumps(summary))


def test_a_failed_write_leaves_the_old_report_whole(demo, monkeypatch):
    write_report([demo])
    before = report_files(demo)
    change_a_result(demo)
    real = storage.atomic_write_bytes

    def full_disk(path, data):
        if Path(path).name == ".report.md.staged":  # report.md, written whole beside its name before the set is committed
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(storage, "atomic_write_bytes", full_disk)
    with pytest.raises(OSError):
        write_report([demo])
    assert report_files(demo) == before  # no new PNG beside the old report, nothing half-replaced
    assert not [p for p in demo.iterdir() if p.name.startswith(".report")]


def test_an_interrupt_while_writing_report_md_leaves_the_old_report_with_its_own_figures(demo, monkeypatch):
    write_report([demo])
    before = report_files(demo)
    old_markdown = (demo / "report.md").read_text()
    change_a_result(demo)
    real = os.replace

    def crash_on_markdown(src, dst):
        if Path(dst).name == ".report.md.staged":  # report.md written whole beside its name, before the set's commit
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_markdown)  # the rename inside the atomic writer
    with pytest.raises(KeyboardInterrupt):
        write_report([demo])
    monkeypatch.undo()
    assert report_files(demo) == before  # report.html never replaced, the new figures removed
    assert (demo / "report.md").read_text() == old_markdown
    assert all((demo / link).is_file() for link in linked_figures(old_markdown))
    # The next report that completes removes the figures no report.md shows.
    written = write_report([demo])
    shown = {link.rpartition("/")[2] for link in linked_figures(written.markdown.read_text())}
    assert {p.name for p in (demo / FIGURES_FOLDER).iterdir()} == shown
    assert "99.0" in written.markdown.read_text()


@pytest.mark.parametrize("umask, file_mode, folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_report_files_honour_the_umask(demo_once, tmp_path, umask, file_mode, folder_mode):
    out = tmp_path / "report"
    code = (f"import os, sys; os.umask({umask:#o}); from latefusion.cli import main; "
            f"sys.exit(main(['report', {str(demo_once)!r}, '--out', {str(out)!r}]))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(out / "report.html") == file_mode and mode(out / "report.md") == file_mode
    assert mode(out / FIGURES_FOLDER) == folder_mode
    assert {mode(p) for p in (out / FIGURES_FOLDER).iterdir()} == {file_mode}


# ------------------------------------------------------------------------------ 4: the metrics

def test_confusion_matrices_are_the_runs_test_confusion(demo_once):
    report = collect([demo_once])
    matrices = confusions(report)
    assert list(matrices) == list(report.aggregate["mean"]["methods"])
    for key, matrix in matrices.items():
        result = RunDir(demo_once / run_folder(key)).result()
        assert matrix == result["test_confusion"]
        assert sum(map(sum, matrix)) == result["n_test"]
        # test_acc went through float32; one sample of n_test = 200 is 5e-3
        assert sum(matrix[i][i] for i in range(len(matrix))) / result["n_test"] == pytest.approx(result["test_acc"], abs=1e-6)


def test_probe_gap_figure_draws_the_guides_numbers_on_the_guides_split(demo_once):
    report = collect([demo_once])
    summary = report.seeds[0].summary
    gaps = probe_gaps(report, "val")
    assert set(gaps) == {"naive", "umt"}  # uni-modal minus naive and minus UMT encoder
    assert {m: v[0] for m, v in gaps["naive"].items()} == summary["guide"]["evidence"]["probe_gap"]
    for m in report.modalities:  # the test-split gaps in summary.json are the probe table's differences
        assert summary["probe_gap"]["test"]["naive"][m] == pytest.approx(summary["probe"]["unimodal"][m] - summary["probe"]["naive"][m])
    markdown = (write_report([demo_once], demo_once.parent / "gap")).markdown.read_text()
    assert "Probe gap per modality on the validation split" in markdown
    assert "one seed, so no error bars" in markdown
    assert "All numbers on the validation split" in markdown and "(test split)" in markdown


def test_umt_distillation_losses_and_best_epochs_reach_the_figures(demo_once):
    report = collect([demo_once])
    histories = {k: [s.runs[k].history for s in report.seeds] for k in report.aggregate["mean"]["methods"]
                 if all(s.runs[k].history for s in report.seeds)}
    distilled = distill_histories(report, histories)
    assert list(distilled) == ["umt"]
    assert all(f"train_distill_{m}" in row for row in distilled["umt"][0] for m in report.modalities)
    best = {k: [s.runs[k].result["best_epoch"] for s in report.seeds] for k in histories}
    assert all(0 <= e < len(histories[k][0]) for k, es in best.items() for e in es)
    # The stars: the same figure with no best epochs to mark (legend included) differs only by them.
    assert curves_figure(histories, report.modalities, best) != curves_figure(histories, report.modalities, {k: [] for k in best})


def test_guide_evidence_holds_a_paired_test_that_matches_the_accuracies(demo_once):
    evidence = json.loads((demo_once / "summary.json").read_text())["guide"]["evidence"]
    test, acc, n = evidence["naive_vs_ume"], evidence["val_acc"], evidence["n_val"]
    assert test["first_only"] - test["second_only"] == round((acc["naive"] - acc["ume"]) * n)
    assert 0 < test["p_value"] <= 1
    umt = evidence["umt_vs_ume"]
    assert umt["first_only"] - umt["second_only"] == round((acc["umt"] - acc["ume"]) * n)
