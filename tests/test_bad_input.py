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



def test_a_repeated_header_and_other_separators_are_named(tmp_path):
    """Found by the fuzz test below: these were refused, but for what followed from them (an unknown
    split '', a file type '')."""
    folder = vector_manifest(tmp_path / "d", n=20)
    manifest = folder / "manifest.csv"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines + lines) + "\n")  # two manifests joined
    with pytest.raises(DataFormatError, match=r"manifest\.csv, line 22: repeats the header \(line 1\); two manifests joined\?"):
        build(folder)
    manifest.write_text("\n".join(lines[:5] + [lines[5].replace(",", ";")] + lines[6:]) + "\n")
    with pytest.raises(DataFormatError, match=r"manifest\.csv, line 6: one cell 's4;cat;test;4;1', separated by ';'\? A manifest's cells"):
        build(folder)
    manifest.write_text("\n".join(line.replace(",", "\t") for line in lines) + "\n")
    with pytest.raises(DataFormatError, match=r"manifest\.csv, line 1: one cell 'id\\tlabel.*', separated by a tab\?"):
        build(folder)


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



def test_a_path_the_system_refuses_to_look_up_is_a_problem_of_its_sample(tmp_path):
    """Found by the fuzz test below: a 1,000-character file name raised OSError (ENAMETOOLONG)."""
    folder = tmp_path / "d"
    folder.mkdir()
    rows = []
    for i in range(12):
        np.save(folder / f"{i}.npy", np.full(2, i, np.float32))
        rows.append(f"s{i},{'ab'[i % 2]},{'test' if i >= 9 else 'train'},{'x' * 1000 if i == 1 else ''}{i}.npy")
    (folder / "manifest.csv").write_text("\n".join(["id,label,split,f", *rows]) + "\n")
    [problem] = check_bundle(bundle_of(folder))
    assert problem.kind == "unreadable-file" and problem.message.startswith("line 3 (id 's1'), modality 'f': xxxxx")
    assert problem.message.endswith("1.npy cannot be read: File name too long (ENAMETOOLONG)"), problem.message


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
    header, _, row_a, row_b = out.splitlines()[2:6]  # after "runs in FOLDER" and a blank line
    assert header.split()[:3] == ["run", "data", "fingerprint"] and row_a.split()[1] == prints[0] and row_b.split()[1] == prints[1]
    assert "configs are the same" in out and "data differ" in out
    assert compare_runs([a, a]).differing == []


# 7. fuzz: malformed manifests are read as their lines say, or refused by name

FUZZ_EXAMPLES = 200
FUZZ_HEADER = "id,label,split,f,v.a,v.b"
FUZZ_ROWS = [f"s{i},{'ab'[i % 2]},{'test' if i in (4, 9) else 'train'},{i}.npy,{i},{i % 3}" for i in range(12)]
# Characters that matter to a CSV reader or a decoder, and a few ordinary ones.
FUZZ_ALPHABET = '",;\t \'\\\n\r\x00\x0b\x85\u2028\u00e9\U0001f600ab1.-/'


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    for i in range(12):
        np.save(folder / f"{i}.npy", np.full(2, i, np.float32))
    return folder


def fuzz_edits():
    from hypothesis import strategies as st

    line, position = st.integers(0, 12), st.integers(0, 40)
    text = st.text(FUZZ_ALPHABET, min_size=1, max_size=6)
    return st.lists(st.one_of(
        st.tuples(st.just("insert"), line, position, text),                        # quotes, separators, breaks...
        st.tuples(st.just("blank"), line, st.just(0), st.sampled_from(["", "  ", ",,,,,", '"",""', "\t"])),
        st.tuples(st.just("duplicate"), line, st.just(0), st.just("")),
        st.tuples(st.just("huge"), line, position, st.sampled_from(["x" * 300, "x" * 1000, "x" * 131_073, '"' + "y" * 140_000])),
        st.tuples(st.just("separator"), line, st.just(0), st.sampled_from([";", "\t", ", "])),
    ), max_size=4)


def apply_edit(lines, edit):
    kind, line, position, text = edit
    line = min(line, len(lines) - 1)
    if kind == "insert" or kind == "huge":
        lines[line] = lines[line][:position] + text + lines[line][position:]
    elif kind == "blank":
        lines.insert(line, text)
    elif kind == "duplicate":
        lines.insert(line, lines[line])
    else:
        lines[line] = lines[line].replace(",", text)


def expected_samples(data: bytes) -> int | None:
    """What a manifest's rows must be: one per line after the header, blank lines (cells all blank,
    each line parsed alone) aside; None when it is not UTF-8 (it must then be refused)."""
    import csv

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    lines = re.split(r"\r\n|\r|\n", text)
    try:
        filled = [any(cell.strip() for row in csv.reader([line]) for cell in row) for line in lines]
    except csv.Error:  # a cell over the field limit
        return None
    return max(sum(filled) - 1, 0)


def test_fuzzed_manifests_are_read_as_their_lines_say_or_refused_by_name(fuzz_folder):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from latefusion.errors import UserError

    seen = {"read": 0, "refused": 0}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(edits=fuzz_edits(), ending=st.sampled_from(["\n", "\r\n", "\r"]), last=st.booleans(),
           encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    def check(edits, ending, last, encoding):
        lines = [FUZZ_HEADER, *FUZZ_ROWS]
        for edit in edits:
            apply_edit(lines, edit)
        data = (ending.join(lines) + (ending if last else "")).encode(encoding, errors="replace")
        (fuzz_folder / "manifest.csv").write_bytes(data)
        expected = expected_samples(data)
        try:
            bundle = build(fuzz_folder)
        except UserError as error:  # refused: by name, never another exception
            assert str(fuzz_folder) in str(error), error
            seen["refused"] += 1
            return
        assert expected is not None, "a manifest that is not UTF-8, or holds a huge cell, was read"
        assert sample_count(bundle) == expected, (edits, ending, encoding)
        seen["read"] += 1

    check()
    print(f"fuzzed manifests: {seen}")
    assert seen["read"] + seen["refused"] == FUZZ_EXAMPLES
    assert seen["read"] >= FUZZ_EXAMPLES // 10 and seen["refused"] >= FUZZ_EXAMPLES // 10, seen  # both outcomes were exercised


# 8. missing labels in a manifest or an .npz (the folder reader's side of 3.)

def test_missing_labels_in_a_manifest_or_npz_are_problems_of_their_samples(tmp_path, capsys):
    from latefusion.cli import main

    folder = vector_manifest(tmp_path / "d", n=40)
    manifest = folder / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("s6,cat,", "s6,,").replace("s8,cat,", "s8, ,"))
    problems = check_bundle(bundle_of(folder))
    assert [(p.kind, p.message) for p in problems] == [
        ("missing-label", f"line {k + 2} (id 's{k}'): no label (an empty cell, or NaN in an .npz); fill it in, or pass --skip-bad to drop "
                          "the sample") for k in (6, 8)]
    assert bundle_of(folder).class_names == ["cat", "dog"]  # not a class ''
    assert main(["check-data", str(folder)]) == 1
    capsys.readouterr()
    assert sample_count(build_dataset(DataConfig(name="folder", path=str(folder), skip_bad=True))) == 38

    labels = np.array([i % 2 for i in range(40)], dtype=float)
    labels[[3, 7]] = np.nan
    np.savez(tmp_path / "d.npz", v=np.arange(80.0).reshape(40, 2), label=labels, split=np.array(["train"] * 30 + ["test"] * 10))
    npz = bundle_of(tmp_path / "d.npz")
    assert npz.class_names == ["0", "1"] and [p.kind for p in check_bundle(npz)] == ["missing-label"] * 2  # the others stay numbers
