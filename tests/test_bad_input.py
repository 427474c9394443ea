"""Bad input, third round (issue 20): a manifest whose quoting swallows lines, images of every Pillow
mode, missing labels and bad modality names from Python, a killed `prepare` rerun, and the run-folder
commands (resume of nothing, resume and compare of runs whose data changed)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from latefusion.config import DataConfig
from latefusion.data import DATASETS, build_dataset
from latefusion.data.checks import check_bundle
from latefusion.data.folder import DataFormatError


def vector_manifest(folder, n=240, classes=("cat", "dog")):
    """A manifest of `n` samples of one number-column modality (no files to write): line k + 2 is sample k."""
    folder.mkdir(exist_ok=True)
    rows = [f"s{i},{classes[i % len(classes)]},{'test' if i % 5 == 4 else 'train'},{i},{i % 3}" for i in range(n)]
    (folder / "manifest.csv").write_text("\n".join(["id,label,split,v.a,v.b", *rows]) + "\n")
    return folder


def build(folder, **options):
    return build_dataset(DataConfig(name="folder", path=str(folder), options=options))


def bundle_of(folder, **options):
    return DATASETS.get("folder")(DataConfig(name="folder", path=str(folder), options=options))


def sample_count(bundle):
    return sum(len(split) for split in bundle.splits.values())


# 1. a stray quote in a manifest cell

def test_a_stray_quote_that_joins_lines_is_named_with_file_and_line(tmp_path):
    folder = vector_manifest(tmp_path / "d")
    assert sample_count(build(folder)) == 240
    manifest = folder / "manifest.csv"
    lines = manifest.read_text().splitlines()
    lines[101] = lines[101].replace(",cat,", ',"cat,')  # line 102, sample s100: a quote never closed on its line
    lines[200] = lines[200].replace(",dog,", ',dog",')  # ... closed 99 lines further down
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"manifest\.csv, line 102: the cell of column 'label' holds a line break: lines 102 to 201 "
                                              r"were read as one row.*'\"'"):
        build(folder)
    lines[200] = lines[200].replace('dog"', "dog")  # never closed: it runs to the end of the file
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"manifest\.csv, line 102: the cell of column 'label' holds a line break: lines 102 to 241 "):
        build(folder)
    lines[101] = lines[101].replace('"cat', '"c\nat"')  # a quoted cell holding a line break
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"manifest\.csv, line 102: the cell of column 'label' holds a line break: lines 102 to 103 "):
        build(folder)


def test_manifest_rows_are_its_lines_blank_lines_aside(tmp_path):
    folder = vector_manifest(tmp_path / "d", n=20)
    manifest = folder / "manifest.csv"
    lines = manifest.read_text().splitlines()
    lines[7] = lines[7].replace("s6,", 's"6",', 1)  # a quote inside an unquoted cell is kept as written
    manifest.write_text("\n".join(lines[:3] + ["", ",,,,"] + lines[3:]) + "\n\n")  # a blank line, an empty row, a blank end
    bundle = build(folder)
    assert sample_count(bundle) == 20 and any('s"6"' in split.sample_ids() for split in bundle.splits.values())
    lines[10] = lines[10].replace(",9,", ",x,")  # sample s9, on line 13 of the file written
    manifest.write_text("\n".join(lines[:3] + ["", ",,,,"] + lines[3:]) + "\n")
    assert [p.message for p in check_bundle(bundle_of(folder))] == [
        "line 13 (id 's9'), modality 'v': column 'v.a' holds 'x', not a number"]
    lines[10] = lines[10].replace(",x,", ",9,")
    lines[8] += ",extra"  # a cell beyond the header's columns
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"manifest\.csv, line 9: 6 cells, the header has 5 columns; the cell\(s\) \['extra'\] "
                                              r"belong to no column"):
        build(folder)
    lines[8] = lines[8].removesuffix(",extra") + ","  # an empty cell beyond them (a trailing comma) is harmless
    manifest.write_text("\n".join(lines) + "\n")
    assert sample_count(build(folder)) == 20


def test_a_cell_over_the_csv_field_limit_or_a_nul_is_named(tmp_path):
    folder = vector_manifest(tmp_path / "d", n=20)
    manifest = folder / "manifest.csv"
    lines = manifest.read_text().splitlines()
    huge = lines.copy()
    huge[4] = huge[4].replace("s3,", "s3" + "x" * 200_000 + ",")
    manifest.write_text("\n".join(huge) + "\n")
    with pytest.raises(DataFormatError, match=r"manifest\.csv, line 5: a cell holds more than 131,072 characters, where an id, a label"):
        build(folder)
    lines[4] = lines[4].replace("s3,", "s\x003,")
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"manifest\.csv, line 5: holds a NUL character"):
        build(folder)


# 2. images of every mode Pillow can hand the reader

SIXTEEN_BIT = np.array([[0, 257, 4096], [30000, 65280, 65535]], dtype=np.uint16)


def test_a_sixteen_bit_greyscale_png_is_read_at_its_bit_depth(tmp_path):
    from PIL import Image

    from latefusion.data.folder import read_image_file
    from latefusion.data.media import read_image

    folder = tmp_path / "d"
    folder.mkdir()
    rows = []
    for i in range(8):
        Image.fromarray(SIXTEEN_BIT // (i + 1)).save(folder / f"{i}.png")  # mode I;16
        rows.append(f"s{i},{'ab'[i % 2]},{'test' if i >= 6 else 'train'},{i}.png")
    (folder / "manifest.csv").write_text("\n".join(["id,label,split,image", *rows]) + "\n")
    assert Image.open(folder / "0.png").mode == "I;16"
    np.testing.assert_allclose(read_image_file(folder / "0.png"), SIXTEEN_BIT[None] / 65535, atol=1e-7)
    bundle = build(folder)
    pixels = {s: bundle.splits[s].inputs["image"] for s in bundle.splits}
    np.testing.assert_allclose(pixels["test"][1].numpy(), (SIXTEEN_BIT // 8)[None] / 65535, atol=1e-7)
    flat = Image.fromarray(np.full((4, 4), 30000, np.uint16))
    flat.save(folder / "flat.png")
    np.testing.assert_allclose(read_image_file(folder / "flat.png", (2, 3)), np.full((1, 2, 3), 30000 / 65535), atol=1e-6)  # resized at depth
    # 8 bits where 8 are stored (`latefusion prepare`): the 16-bit values rounded to the nearest of 256 levels
    np.testing.assert_array_equal(read_image(folder / "0.png", mode="L"), np.round(SIXTEEN_BIT / 257).astype(np.uint8))
    assert read_image(folder / "0.png").shape == (2, 3, 3)


def mode_image(mode):
    """An image of `mode` with varied content, built without a file (some modes have no file format)."""
    from PIL import Image

    rgb = Image.fromarray(np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 14)
    if mode.startswith("I;16"):
        order = ">u2" if mode == "I;16B" else "<u2"
        return Image.frombytes(mode, (3, 2), SIXTEEN_BIT.astype(order).tobytes())
    if mode in ("I", "F"):
        return Image.fromarray(SIXTEEN_BIT.astype(np.int32 if mode == "I" else np.float32))
    if mode == "1":
        return rgb.convert("L").point(lambda v: 255 * (v > 100)).convert("1")
    if mode in ("La", "RGBa", "PA"):
        return rgb.convert({"La": "LA", "RGBa": "RGBA", "PA": "RGBA"}[mode]).convert(mode)
    return rgb.convert(mode)


GREY = ("1", "L", "LA", "La")
REFUSED = {"I": "32-bit integer", "F": "32-bit float"}


@pytest.mark.parametrize("mode", __import__("PIL.Image").Image.MODES)
def test_every_pillow_mode_is_read_at_its_depth_or_refused_by_name(tmp_path, mode):
    from PIL import Image

    from latefusion.data.media import MediaError, scaled_pixels

    image = mode_image(mode)
    assert image.mode == mode
    if mode in REFUSED:
        with pytest.raises(MediaError, match=rf"x\.png: a {REFUSED[mode]} image \(Pillow mode {mode}\)"):
            scaled_pixels(image, tmp_path / "x.png")
        return
    pixels = scaled_pixels(image, tmp_path / "x.png")
    assert pixels.dtype == np.float32 and 0 <= pixels.min() and pixels.max() <= 1
    if mode.startswith("I;16"):
        expected = SIXTEEN_BIT / 65535
    elif mode in GREY:
        expected = np.asarray(image.convert("LA").convert("L") if mode == "La" else image.convert("L")) / 255
    else:
        expected = np.asarray(image.convert("RGBA").convert("RGB") if mode == "RGBa" else image.convert("RGB")) / 255
    np.testing.assert_allclose(pixels, expected, atol=1e-7)


@pytest.mark.parametrize("mode, saved_as", [("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("RGB", "PNG"), ("RGBA", "PNG"),
                                            ("I;16", "PNG"), ("I;16B", "TIFF"), ("I;16", "TIFF"), ("CMYK", "JPEG"), ("CMYK", "TIFF"),
                                            ("YCbCr", "TIFF"), ("LAB", "TIFF"), ("PA", "TIFF"), ("I", "TIFF"), ("F", "TIFF")])
def test_image_files_of_every_mode_in_a_manifest_are_read_or_named(tmp_path, mode, saved_as):
    """A file named .png is opened by its content: a TIFF of any mode can reach the reader."""
    from PIL import Image

    from latefusion.data.files import FileProblem
    from latefusion.data.folder import read_image_file

    path = tmp_path / "x.png"
    mode_image(mode).save(path, format=saved_as)
    opened = Image.open(path)
    if opened.mode in REFUSED:
        with pytest.raises(FileProblem, match=rf"^is a {REFUSED[mode]} image \(Pillow mode {mode}\): .*no fixed range"):
            read_image_file(path)
        return
    pixels = read_image_file(path)
    assert pixels.shape[0] == (1 if opened.mode in GREY or opened.mode.startswith("I;16") else 3)
    if opened.mode.startswith("I;16"):
        np.testing.assert_allclose(pixels[0], SIXTEEN_BIT / 65535, atol=1e-7)
    assert pixels.dtype == np.float32 and 0 <= pixels.min() and pixels.max() <= 1


def test_a_png_that_pillow_opens_as_mode_i_is_sixteen_bit(tmp_path):
    """Older Pillow releases opened 16-bit greyscale PNGs as mode I (values 0 to 65535)."""
    from latefusion.data.media import scaled_pixels

    image = mode_image("I")
    image.format = "PNG"
    np.testing.assert_allclose(scaled_pixels(image, tmp_path / "x.png"), SIXTEEN_BIT / 65535, atol=1e-7)


# 3. missing labels given from Python

def frame_columns(n=60):
    g = np.random.default_rng(0)
    label = np.array([("cat", "dog", "eel")[i % 3] for i in range(n)], dtype=object)
    return {"label": label, "split": np.array(["train"] * (n - 15) + ["test"] * 15, dtype=object),
            "a": np.arange(n, dtype=float) + g.normal(size=n), "b": g.normal(size=n)}


class Frame:
    """The least from_dataframe needs (no pandas): `.columns` and `frame[column].to_numpy()`."""

    def __init__(self, data):
        self.data, self.columns = data, list(data)

    def __getitem__(self, column):
        return type("Column", (), {"to_numpy": lambda _: np.asarray(self.data[column])})()


@pytest.mark.parametrize("missing", [None, float("nan"), np.float64("nan"), "", "  "], ids=["None", "nan", "np.nan", "empty", "blank"])
def test_missing_labels_from_a_frame_are_named_or_dropped(missing):
    from latefusion.data import from_dataframe

    data = frame_columns()
    data["label"][[4, 50]] = missing
    with pytest.raises(DataFormatError, match=r"column 'label': 2 missing label\(s\) \(None, NaN, pd\.NA or empty\) at row\(s\) \[4, 50\]; "
                                              r"fill them in, or pass skip_bad=True to drop those rows"):
        from_dataframe(Frame(data), modalities={"v": ["a", "b"]})
    bundle = from_dataframe(Frame(data), modalities={"v": ["a", "b"]}, skip_bad=True)
    assert sample_count(bundle) == 58 and bundle.class_names == ["cat", "dog", "eel"]
    assert len(bundle.splits["test"]) == 14  # row 50 was a test row


@pytest.mark.parametrize("dtype", ["object", "string", "category", "Int64", "float64", "str"])
def test_missing_labels_in_pandas_columns_of_every_dtype_are_named_or_dropped(dtype):
    pd = pytest.importorskip("pandas", reason="pandas is optional and not installed")
    from latefusion.data import from_dataframe

    data = frame_columns()
    if dtype in ("Int64", "float64"):
        data["label"] = np.array([i % 3 for i in range(60)], dtype=object)
    frame = pd.DataFrame({k: v for k, v in data.items()})
    frame["label"] = frame["label"].astype(dtype)
    frame.loc[[4, 50], "label"] = pd.NA if dtype in ("object", "string", "Int64") else None
    assert frame["label"].isna().sum() == 2
    with pytest.raises(DataFormatError, match=r"column 'label': 2 missing label\(s\) .* at row\(s\) \[4, 50\]"):
        from_dataframe(frame, modalities={"v": ["a", "b"]})
    bundle = from_dataframe(frame, modalities={"v": ["a", "b"]}, skip_bad=True)
    assert sample_count(bundle) == 58 and len(bundle.class_names) == 3


def test_missing_labels_given_to_from_arrays_are_named_or_dropped():
    from latefusion.data import from_arrays

    g = np.random.default_rng(0)
    splits = {split: {"v": g.normal(size=(n, 3)) + np.arange(n)[:, None], "label": [("cat", "dog")[i % 2] for i in range(n)]}
              for split, n in (("train", 40), ("test", 10))}
    splits["test"]["label"][3] = None
    with pytest.raises(DataFormatError, match=r"split 'test', 'label': 1 missing label\(s\) \(None, NaN, pd\.NA or empty\) at sample\(s\) \[3\]"):
        from_arrays(**splits)
    bundle = from_arrays(**splits, skip_bad=True)
    assert len(bundle.splits["test"]) == 9 and sample_count(bundle) == 49
    splits["test"]["label"][3] = "dog"
    splits["train"]["label"] = np.where(np.arange(40) == 7, np.nan, np.arange(40) % 2)  # a float NaN, as before
    with pytest.raises(DataFormatError, match=r"split 'train', 'label': 1 missing label\(s\) .* at sample\(s\) \[7\]"):
        from_arrays(**splits)


# 4. a killed `prepare` rerun

def interrupted_prepare(monkeypatch, raw, dst, options, after_shards):
    """`prepare` killed (here: KeyboardInterrupt) right after it wrote `after_shards` shards."""
    from latefusion.data import prepared

    written, write_shard = [], prepared.write_shard

    def write_then_stop(*args):
        manifest = write_shard(*args)
        written.append(args[3].name)
        if len(written) == after_shards:
            raise KeyboardInterrupt
        return manifest

    monkeypatch.setattr(prepared, "write_shard", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        prepared.prepare("modelnet40", raw, dst, options, workers=1, progress=False)
    monkeypatch.setattr(prepared, "write_shard", write_shard)
    return written


def test_a_killed_prepare_rerun_leaves_no_index_describing_other_shards(tmp_path, monkeypatch, capsys):
    from raw_layouts import make_modelnet40

    from latefusion.cli import main
    from latefusion.config import RunConfig
    from latefusion.data.prepared import prepare
    from latefusion.errors import DataError

    raw, dst = tmp_path / "raw", tmp_path / "prepared"
    make_modelnet40(raw, train=2, test=1)
    options = {"size": 8, "shard_size": 2}
    config = RunConfig.model_validate({"data": {"name": "modelnet40", "path": str(dst)}}).data
    views = sorted(raw.rglob("*_0101.obj.shaded_v001.png"))[:2]  # the first view of two test objects
    originals = [view.read_bytes() for view in views]
    for view in views:
        view.write_bytes(b"cut short")  # two test objects left out of the first prepare
    first = prepare("modelnet40", raw, dst, options, workers=1, progress=False)
    assert first["written"]["test"] == 1
    stale_index = (dst / "index.json").read_bytes()
    for view, original in zip(views, originals):
        view.write_bytes(original)  # repaired: a rerun rewrites their shards, now with more samples
    written = interrupted_prepare(monkeypatch, raw, dst, options, after_shards=1)
    assert written and written[0].startswith("test-")
    with pytest.raises(DataError, match="prepare stopped before it finished; rerun the same prepare command"):
        build_dataset(config)
    assert main(["check-data", "modelnet40", "--set", f"data.path={dst}"]) != 0
    capsys.readouterr()

    # An index left by an older latefusion (or copied from elsewhere) that describes other shards:
    # refused when the folder is opened, so check-data names it too.
    second = prepare("modelnet40", raw, dst, options, workers=1, progress=False)
    assert second["written"]["test"] == 3
    (dst / "index.json").write_bytes(stale_index)
    with pytest.raises(DataFormatError, match=r"index\.json does not describe shards/test-0000\d: .*rerun the same `latefusion prepare "
                                              r"modelnet40` command"):
        build_dataset(config)
    assert main(["check-data", "modelnet40", "--set", f"data.path={dst}"]) == 2
    assert "index.json does not describe shards/test-0000" in capsys.readouterr().err
    prepare("modelnet40", raw, dst, options, workers=1, progress=False)
    assert sample_count(build_dataset(config)) == 9 and main(["check-data", "modelnet40", "--set", f"data.path={dst}"]) == 0
    shard = dst / "shards" / "test-00000.json"
    manifest = json.loads(shard.read_text())
    shard.write_text(json.dumps({**manifest, "skipped": [{"id": "x", "split": "test", "why": "?"}]}))  # same samples, other contents
    with pytest.raises(DataFormatError, match=r"does not describe shards/test-00000: shards/test-00000\.json was written after the index"):
        build_dataset(config)


# 5. modality names given from Python

@pytest.mark.parametrize("name", ["training", "forward", "a.b", "", 3])
def test_modality_names_from_python_are_checked_where_they_enter(name):
    from latefusion.data import from_arrays, from_dataframe

    g = np.random.default_rng(0)
    splits = {split: {name: g.normal(size=(n, 3)) + np.arange(n)[:, None], "label": [("cat", "dog")[i % 2] for i in range(n)]}
              for split, n in (("train", 40), ("test", 10))}
    pattern = r"cannot name a modality \(it must be a non-empty string, without '\.', and not an attribute of torch modules"
    with pytest.raises(DataFormatError, match=rf"from_arrays: {re.escape(repr(name))} {pattern}"):
        from_arrays(**splits)
    with pytest.raises(DataFormatError, match=rf"from_dataframe: {re.escape(repr(name))} {pattern}"):
        from_dataframe(Frame(frame_columns()), modalities={name: ["a", "b"]})


# 6. run folders: resume of nothing, resume and compare of runs whose data changed

RUN = ["data.batch_size=16", "train.epochs=1", "train.progress=false", "train.device=cpu", "model.feature_dim=8"]


def sets(*settings):
    return [arg for s in settings for arg in ("--set", s)]


def test_resume_of_a_folder_that_holds_no_run_is_an_error(tmp_path, capsys):
    from latefusion.cli import main

    data = vector_manifest(tmp_path / "d", n=40)
    typo = tmp_path / "runs" / "typo"
    assert main(["train", "--data", str(data), *sets(*RUN), "--out", str(typo), "--resume"]) == 2
    assert f"{typo} holds no run to resume (no config.yaml); to start a new run there, leave out --resume" in capsys.readouterr().err
    assert not typo.exists()
    assert main(["train", "--out", str(typo), "--resume"]) == 2  # alone: the default config was trained
    assert main(["train", "--data", str(data), *sets(*RUN), "--out", str(typo), "--resume", "--seeds", "2"]) == 2
    assert f"{typo} holds no runs to resume; to start new runs there, leave out --resume" in capsys.readouterr().err
    assert not typo.exists()


def test_resume_of_a_finished_run_compares_the_data_fingerprint(tmp_path, capsys):
    from latefusion.cli import main
    from latefusion.storage import read_json

    data = vector_manifest(tmp_path / "d", n=40)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), *sets(*RUN), "--out", str(run)]) == 0
    trained = read_json(run / "result.json")["fingerprints"]["data"]
    assert main(["train", "--out", str(run), "--resume"]) == 0  # the same data: the result, as before
    capsys.readouterr()
    manifest = data / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("s3,dog,train,3,", "s3,dog,train,3.5,"))
    assert main(["train", "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume {run}: it finished on other data: data fingerprint: {trained} -> " in err, err


def test_compare_shows_the_data_fingerprints_of_runs_on_different_data(tmp_path, capsys):
    from latefusion.cli import main
    from latefusion.compare import compare_runs
    from latefusion.storage import read_json

    data = vector_manifest(tmp_path / "d", n=40)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--data", str(data), *sets(*RUN), "--out", str(a)]) == 0
    manifest = data / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("s3,dog,train,3,", "s3,dog,train,3.5,"))
    assert main(["train", "--data", str(data), *sets(*RUN), "--out", str(b)]) == 0
    capsys.readouterr()
    prints = [read_json(run / "result.json")["fingerprints"]["data"] for run in (a, b)]
    assert compare_runs([a, b]).differing == ["data fingerprint"]
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    header, _, row_a, row_b = out.splitlines()[:4]
    assert header.split()[:3] == ["run", "data", "fingerprint"] and row_a.split()[1] == prints[0] and row_b.split()[1] == prints[1]
    assert "configs are the same" in out and "data differ" in out
    assert compare_runs([a, a]).differing == []
