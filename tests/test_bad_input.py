"""Bad input, third round (issue 20): a manifest whose quoting swallows lines, images of every Pillow
mode, missing labels and bad modality names from Python, a killed `prepare` rerun, and the run-folder
commands (resume of nothing, resume and compare of runs whose data changed)."""

from __future__ import annotations

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
