"""In-memory data: from_arrays and from_dataframe give a checked DataBundle of TensorSplits that
`train(config, out, bundle=...)` trains on; bad input is refused with a message naming what is wrong."""

import numpy as np
import pytest
import torch

from latefusion import resolve_config, train
from latefusion.data import IN_MEMORY, DataBundle, TensorSplit, from_arrays, from_dataframe
from latefusion.data.checks import DataCheckError
from latefusion.errors import ConfigError, DataError
from latefusion.probe import probe_run


def make_split(n, seed, labels=("cat", "dog", "eel")):
    g = np.random.default_rng(seed)
    y = np.array([labels[i % len(labels)] for i in range(n)])
    code = np.array([labels.index(v) for v in y], dtype=np.float32)
    return {"tab": g.normal(size=(n, 5)).astype(np.float32) + code[:, None],
            "img": g.normal(size=(n, 1, 8, 8)).astype(np.float32) + code[:, None, None, None], "label": y}


def test_from_arrays_gives_a_bundle_of_tensor_splits_that_trains(tmp_path):
    bundle = from_arrays(train=make_split(60, 0), val=make_split(30, 1), test=make_split(30, 2), name="toy")
    assert isinstance(bundle, DataBundle) and bundle.name == "toy"
    assert all(isinstance(s, TensorSplit) for s in bundle.splits.values())
    assert [len(bundle.splits[s]) for s in ("train", "val", "test")] == [60, 30, 30]
    assert bundle.class_names == ["cat", "dog", "eel"] and bundle.num_classes == 3
    assert [(m.name, m.kind, m.shape) for m in bundle.modalities] == [("tab", "vector", (5,)), ("img", "image", (1, 8, 8))]
    assert bundle.encoders == {"tab": {"name": "mlp"}, "img": {"name": "cnn"}}

    config = resolve_config(None, [f"data.name={IN_MEMORY}", "train.epochs=1", "train.progress=false", "data.batch_size=16"])
    result = train(config, tmp_path / "run", bundle=bundle)
    assert result["dataset"] == "toy" and 0 <= result["test_acc"] <= 1
    with pytest.raises(ConfigError, match="built in Python"):  # the config alone cannot rebuild it ...
        probe_run(tmp_path / "run")
    assert set(probe_run(tmp_path / "run", bundle=bundle)) == {"tab", "img"}  # ... the bundle can


def test_from_arrays_takes_pairs_torch_tensors_and_carves_val():
    train_split = make_split(100, 0)
    labels = train_split.pop("label")
    bundle = from_arrays(train=({k: torch.from_numpy(v) for k, v in train_split.items()}, labels), test=make_split(20, 1),
                         kinds={"img": "image"}, encoders={"tab": {"name": "mlp", "options": {"depth": 1}}})
    assert [len(bundle.splits[s]) for s in ("train", "val", "test")] == [85, 15, 20]
    assert bundle.encoders["tab"] == {"name": "mlp", "options": {"depth": 1}}


@pytest.mark.parametrize("change, message", [
    (lambda s: s["train"].pop("label"), "split 'train' has no 'label' entry"),
    (lambda s: s["val"].pop("img"), r"split 'val' has modalities \['tab'\]"),
    (lambda s: s["test"].update(tab=s["test"]["tab"][:, :3]), r"split 'test', modality 'tab': samples of shape \(3,\)"),
    (lambda s: s["train"].update(tab=s["train"]["tab"][:10]), r"modality 'tab': 10 samples, but 60 labels"),
    (lambda s: s["train"].update(tab=np.array([["a"] * 5] * 60)), "dtype <U1 is not numeric"),
    (lambda s: s["test"].update(label=np.array(["cow"] * 30)), r"label\(s\) \['cow'\] appear in val or test but never in train"),
    (lambda s: s.update(test=None), "needs a test split"),
    (lambda s: s.update(train=[1, 2]), "split 'train' is a list"),
])
def test_from_arrays_refuses_bad_input_by_name(change, message):
    splits = {"train": make_split(60, 0), "val": make_split(30, 1), "test": make_split(30, 2)}
    change(splits)
    with pytest.raises(DataError, match=message):
        from_arrays(**splits)


def test_from_arrays_runs_the_data_checks():
    splits = {"train": make_split(60, 0), "val": make_split(30, 1), "test": make_split(30, 2)}
    splits["val"]["tab"][3, 0] = np.nan
    with pytest.raises(DataCheckError, match="non-finite"):
        from_arrays(**splits)
    assert from_arrays(**splits, check=False).splits["val"].inputs["tab"].isnan().any()


class Column:
    def __init__(self, values):
        self.values = values

    def to_numpy(self):
        return np.asarray(self.values)


class Frame:
    """The least a data frame needs for from_dataframe: `.columns` and `frame[column].to_numpy()`."""

    def __init__(self, data):
        self.data = data
        self.columns = list(data)

    def __getitem__(self, column):
        return Column(self.data[column])


def frame_data(n=90):
    g = np.random.default_rng(0)
    label = [i % 3 for i in range(n)]
    data = {"label": label, "split": ["train"] * (n - 30) + ["val"] * 15 + ["test"] * 15,
            "age": [v + g.normal() for v in label], "height": [2 * v + g.normal() for v in label]}
    images = np.empty(n, dtype=object)
    images[:] = [np.full((4, 4), v, dtype=np.float32) + g.normal(size=(4, 4)) for v in label]
    data["pixels"] = images
    return data


def test_from_dataframe_reads_columns_and_array_cells():
    bundle = from_dataframe(Frame(frame_data()), label="label", split="split", modalities={"tabular": ["age", "height"], "image": "pixels"})
    assert [(m.name, m.kind, m.shape) for m in bundle.modalities] == [("tabular", "vector", (2,)), ("image", "image", (4, 4))]
    assert [len(bundle.splits[s]) for s in ("train", "val", "test")] == [60, 15, 15]
    assert bundle.class_names == ["0", "1", "2"]
    assert torch.equal(bundle.splits["train"].labels[:6], torch.tensor([0, 1, 2, 0, 1, 2]))


@pytest.mark.parametrize("kwargs, message", [
    ({"modalities": {"tabular": ["age", "weight"]}}, "no column 'weight'"),
    ({"modalities": {"tabular": ["age", "label"]}}, "use the label or split column"),
    ({"modalities": {}}, "needs modalities="),
    ({"modalities": {"tabular": ["age"]}, "split": "label"}, r"unknown split value\(s\)"),
])
def test_from_dataframe_refuses_bad_input_by_name(kwargs, message):
    with pytest.raises(DataError, match=message):
        from_dataframe(Frame(frame_data()), **kwargs)
    with pytest.raises(DataError, match="takes a data frame"):
        from_dataframe({"label": [1]}, modalities={"x": ["a"]})


def test_from_dataframe_with_pandas():
    pd = pytest.importorskip("pandas", reason="pandas is optional and not installed")
    bundle = from_dataframe(pd.DataFrame(frame_data()), modalities={"tabular": ["age", "height"], "image": "pixels"})
    assert bundle.modality_names == ["tabular", "image"] and len(bundle.splits["test"]) == 15
