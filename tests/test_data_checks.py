"""Data checks: each problem by name, on in-memory and file-backed data; check-data; train's stop and --skip-bad."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from file_dataset import NUM_CLASSES, FileProblem, read_audio, read_npy, row_index, write_fixture, write_manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latefusion.cli import main
from latefusion.resolve import resolve_config
from latefusion.data import DATASETS, DataBundle, Modality, TensorSplit, build_dataset
from latefusion.data.checks import DataCheckError, check_bundle, check_label, check_sample, checked, format_report

SPEC_MODALITIES = [Modality("a", "vector", (4,)), Modality("b", "vector", (3,))]


def tensor_bundle(sizes=(6, 4, 4), seed=0, dims=(4, 3)) -> DataBundle:
    g = torch.Generator().manual_seed(seed)
    splits = {
        split: TensorSplit({"a": torch.randn(n, dims[0], generator=g), "b": torch.randn(n, dims[1], generator=g)}, torch.randint(3, (n,), generator=g))
        for split, n in zip(("train", "val", "test"), sizes)
    }
    return DataBundle(name="tiny", modalities=SPEC_MODALITIES, num_classes=3, splits=splits)


def found(problems):
    return {(p.kind, p.where) for p in problems}


def test_clean_data_has_no_problems(tmp_path):
    assert check_bundle(tensor_bundle()) == []
    write_fixture(tmp_path)
    assert check_bundle(DATASETS.get("test-files")(resolve_config(None, ["data.name=test-files", f"data.path={tmp_path}"]).data)) == []


def test_in_memory_problems_are_named_with_sample_and_values():
    bundle = tensor_bundle()
    train, test = bundle.splits["train"], bundle.splits["test"]
    train.inputs["a"][1, 2] = float("nan")
    train.inputs["b"][2, 0] = float("inf")
    test.labels[3] = 7
    test.inputs["a"][0], test.inputs["b"][0] = train.inputs["a"][4], train.inputs["b"][4]  # leak
    problems = check_bundle(bundle)
    assert found(problems) == {("non-finite", "train[1]"), ("non-finite", "train[2]"), ("label-out-of-range", "test[3]"), ("leaked-sample", "train[4]")}
    messages = {p.where: p.message for p in problems}
    assert messages["train[1]"] == "modality 'a' holds 1 NaN and 0 Inf values"
    assert messages["test[3]"] == "label 7 is outside [0, 3) for this data set's 3 classes"
    assert messages["train[4]"] == "same input tensors as test[0]"


def test_sample_level_messages():
    spec = tensor_bundle().spec
    good = {"a": torch.zeros(4), "b": torch.zeros(3)}
    assert check_sample(good, 0, spec) == []
    [wrong] = check_sample({**good, "a": torch.zeros(5)}, 0, spec)
    assert (wrong.kind, wrong.message) == ("wrong-shape", "modality 'a' has shape (5,), expected (4,)")
    [missing] = check_sample({"a": torch.zeros(4)}, 0, spec)
    assert (missing.kind, missing.message) == ("missing-modality", "modality 'b' is missing (the sample has ['a'])")
    [extra] = check_sample({**good, "c": torch.zeros(1)}, 0, spec)
    assert (extra.kind, extra.message) == ("unexpected-modality", "modalities ['c'] are not among the data set's ['a', 'b']")
    [array] = check_sample({**good, "b": np.zeros(3)}, 0, spec)
    assert (array.kind, array.message) == ("wrong-shape", "modality 'b' is a ndarray, expected a tensor of shape (3,)")
    assert [p.kind for p in check_label(1.5, 3)] == ["label-not-integer"]
    assert [p.kind for p in check_label(-1, 3)] == ["label-out-of-range"]
    assert check_label(torch.tensor(2), 3) == [] and check_label(np.int64(1), 3) == [] and check_label(2.0, 3) == []
    assert [p.kind for p in check_label(True, 3)] == ["label-not-integer"]


def test_empty_split_is_reported_and_cannot_be_skipped():
    bundle = tensor_bundle(sizes=(6, 0, 4))
    problems = check_bundle(bundle)
    assert found(problems) == {("empty-split", "val")}
    assert "empty-split (1):\n    val: split 'val' has no samples" in format_report(bundle, problems)
    with pytest.raises(DataCheckError, match="concern whole splits; skip_bad cannot drop them"):
        checked(bundle, skip_bad=True)


def test_shapes_that_disagree_with_the_spec_everywhere_give_a_short_report():
    bundle = tensor_bundle(sizes=(30, 4, 4), dims=(5, 3))
    report = format_report(bundle, check_bundle(bundle))
    assert "wrong-shape (38):" in report and "modality 'a' has shape (5,), expected (4,)" in report
    assert "... and 28 more" in report and len(report.splitlines()) == 13


def test_skip_bad_drops_the_named_samples_and_says_how_many(capsys):
    bundle = tensor_bundle()
    bundle.splits["train"].inputs["a"][1, 0] = float("nan")
    bundle.splits["val"].labels[2] = 5
    with pytest.raises(DataCheckError, match=r"(?s)non-finite.*label-out-of-range.*pass --skip-bad"):
        checked(bundle, skip_bad=False)
    kept = checked(bundle, skip_bad=True)
    assert [len(kept.splits[s]) for s in ("train", "val", "test")] == [5, 3, 4]
    assert check_bundle(kept) == []
    assert "skip_bad: dropped 2 bad samples (train 1, val 1)" in capsys.readouterr().err


def corrupt(root: Path, rows: list[dict]) -> set[tuple[str, str]]:
    """One bad input of each kind; returns the (kind, place) each should be reported as."""
    def row(split, i):
        return rows[row_index(rows, split, i)]

    def path(split, i, modality):
        return root / row(split, i)[modality]

    path("train", 1, "image").unlink()
    path("train", 2, "audio").write_bytes(path("train", 2, "audio").read_bytes()[:-20])
    path("train", 3, "image").write_bytes(b"not an array at all")
    path("train", 4, "image").write_bytes(path("train", 4, "image").read_bytes()[:-8])
    for modality in ("image", "audio"):  # val[0] is a byte copy of train[5]
        path("val", 0, modality).write_bytes(path("train", 5, modality).read_bytes())
    row("test", 1)["id"] = row("train", 6)["id"]  # the same source in two splits
    np.save(path("val", 1, "image"), np.full(16, np.nan, np.float32))
    np.save(path("val", 2, "image"), np.zeros(15, np.float32))
    row("test", 0)["label"] = "7"
    row("test", 2)["audio"] = ""
    row("test", 3)["label"] = "seven"
    write_manifest(root, rows)
    return {
        ("missing-file", "train[1]"), ("truncated-file", "train[2]"), ("unreadable-file", "train[3]"),
        ("truncated-file", "train[4]"), ("leaked-sample", "train[5]"), ("leaked-id", "train[6]"),
        ("non-finite", "val[1]"), ("wrong-shape", "val[2]"), ("label-out-of-range", "test[0]"),
        ("missing-modality", "test[2]"), ("unreadable-sample", "test[3]"),
    }


@pytest.fixture
def bad_files(tmp_path):
    root = tmp_path / "data"
    expected = corrupt(root, write_fixture(root))
    return root, expected


def test_file_backed_data_reports_each_bad_input_by_name(bad_files):
    root, expected = bad_files
    bundle = DATASETS.get("test-files")(resolve_config(None, ["data.name=test-files", f"data.path={root}"]).data)
    problems = check_bundle(bundle)
    assert found(problems) == expected
    messages = {(p.kind, p.where): p.message for p in problems}
    assert messages["missing-file", "train[1]"] == "image file train-001.npy does not exist"
    assert messages["truncated-file", "train[2]"] == "audio file train-002.wav holds 22 of the 32 frames its header declares"
    assert messages["truncated-file", "train[4]"] == "image file train-004.npy holds 56 of the 64 data bytes its header declares"
    assert messages["unreadable-file", "train[3]"].startswith("image file train-003.npy is not a .npy array (ValueError: the magic string is not correct")
    assert messages["leaked-id", "train[6]"] == "same sample id as test[1]"
    assert messages["unreadable-sample", "test[3]"] == "loading it raised ValueError: invalid literal for int() with base 10: 'seven'"


def test_check_data_command_and_train_stop_with_the_same_report(bad_files, tmp_path, capsys):
    root, expected = bad_files
    assert main(["check-data", "test-files", "--set", f"data.path={root}"]) == 1
    report = capsys.readouterr().out.strip()
    assert report.startswith("data set 'test-files' (train 12, val 6, test 6 samples): 11 problems in 11 places")
    for kind, where in expected:
        assert f"\n  {kind} (" in report and f"\n    {where}: " in report

    train_args = ["train", "--set", "data.name=test-files", "--set", f"data.path={root}", "--set", "train.epochs=1",
                  "--set", "train.progress=false", "--out", str(tmp_path / "run")]
    assert main(train_args) == 2
    error = capsys.readouterr().err
    assert report in error and "pass --skip-bad" in error
    assert not (tmp_path / "run").exists()  # stopped before anything was trained or written

    assert main([*train_args, "--skip-bad"]) == 0
    assert "skip_bad: dropped 11 bad samples (train 6, val 2, test 3)" in capsys.readouterr().err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert (result["n_val"], result["n_test"]) == (4, 3)


def test_clean_file_backed_data_passes_check_data(tmp_path, capsys):
    write_fixture(tmp_path)
    assert main(["check-data", "test-files", "--set", f"data.path={tmp_path}"]) == 0
    assert "no problems found" in capsys.readouterr().out


# --- property-based: random data and corruptions never crash the checks, and bad samples are found ---

CORRUPTIONS = ("nan", "inf", "label-high", "label-negative")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), sizes=st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(1, 8)),
       corruptions=st.lists(st.tuples(st.sampled_from(("train", "val", "test")), st.integers(0, 7), st.sampled_from(CORRUPTIONS)), max_size=6),
       leak=st.booleans())
def test_checks_find_exactly_the_corrupted_samples(seed, sizes, corruptions, leak):
    bundle = tensor_bundle(sizes, seed)
    bad = set()
    for split, index, kind in corruptions:
        data = bundle.splits[split]
        index %= len(data)
        if kind in ("nan", "inf"):
            data.inputs["ab"[index % 2]][index, 0] = float(kind)
        else:
            data.labels[index] = NUM_CLASSES + index if kind == "label-high" else -1 - index
        bad.add(f"{split}[{index}]")
    if leak and "train[0]" not in bad and "test[0]" not in bad:
        for m in ("a", "b"):
            bundle.splits["test"].inputs[m][0] = bundle.splits["train"].inputs[m][0]
        bad.add("train[0]")
    assert {p.where for p in check_bundle(bundle)} == bad


@pytest.fixture(scope="module")
def clean_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    return root, write_fixture(root, sizes=(3, 2, 2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(modality=st.sampled_from(("image", "audio")), cut=st.floats(0, 1, exclude_max=True),
       flip=st.one_of(st.none(), st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7))), junk=st.binary(max_size=64))
def test_readers_and_checks_survive_truncated_flipped_and_random_files(clean_files, modality, cut, flip, junk):
    source, rows = clean_files
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for file in source.iterdir():
            (root / file.name).write_bytes(file.read_bytes())
        target = root / rows[0][modality]
        read = read_npy if modality == "image" else read_audio
        original = target.read_bytes()
        flipped = bytearray(original)
        if flip is not None:
            position, bit = flip
            flipped[int(position * len(original))] ^= 1 << bit
        for kind, content in (("prefix", original[: int(cut * len(original))]), ("junk", junk), ("flipped", bytes(flipped))):
            target.write_bytes(content)
            outcome = reading(read, target)  # anything but FileProblem escapes and fails the test
            if kind == "prefix":
                assert outcome in ("truncated-file", "unreadable-file")  # a strict prefix is never read as valid
            flagged = "train[0]" in {p.where for p in check_bundle(build_files(root))}
            assert flagged or outcome == "read"


def reading(read, path) -> str:
    try:
        read(path)
        return "read"
    except FileProblem as problem:
        return problem.kind


def build_files(root):
    return DATASETS.get("test-files")(resolve_config(None, ["data.name=test-files", f"data.path={root}"]).data)


def test_build_dataset_runs_the_checks_unless_told_not_to(bad_files):
    root, _ = bad_files
    with pytest.raises(DataCheckError):
        build_dataset(resolve_config(None, ["data.name=test-files", f"data.path={root}"]).data)
    bundle = build_dataset(resolve_config(None, ["data.name=test-files", f"data.path={root}", "data.check=false"]).data)
    assert len(bundle.splits["train"]) == 12
