"""Points 2-3: version folders, claims, the r1.14 non-timestamped mode, file layout."""

from __future__ import annotations

import json
import os
import time

import keras
import pytest

import export_core
from tests import models


def files_under(path) -> set[str]:
    return {
        os.path.relpath(os.path.join(root, f), path)
        for root, _, names in os.walk(path)
        for f in names
    }


def test_timestamped_export_creates_integer_version_folder(tmp_path):
    before = int(time.time())
    path = export_core.export_saved_model(models.functional_regressor(), str(tmp_path))
    assert isinstance(path, str)
    assert os.path.dirname(path) == str(tmp_path)
    version = int(os.path.basename(path))
    assert before <= version <= int(time.time()) + 1
    assert os.listdir(tmp_path) == [os.path.basename(path)], "no staging or claim leftovers"


def test_taken_timestamp_moves_to_next_free_integer(tmp_path, monkeypatch):
    now = 1_800_000_000
    monkeypatch.setattr(time, "time", lambda: float(now))
    (tmp_path / str(now)).mkdir()
    (tmp_path / str(now + 1)).mkdir()
    (tmp_path / str(now + 1) / "saved_model.pb").write_bytes(b"someone else's")
    path = export_core.export_saved_model(models.functional_regressor(), str(tmp_path))
    assert path == str(tmp_path / str(now + 2))
    assert (tmp_path / str(now + 1) / "saved_model.pb").read_bytes() == b"someone else's"


def test_non_timestamped_accepts_missing_or_empty_folder(tmp_path):
    model = models.functional_regressor()
    missing = tmp_path / "missing" / "model"
    assert export_core.export_saved_model(model, str(missing), timestamped=False) == str(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_core.export_saved_model(model, str(empty), timestamped=False) == str(empty)
    assert "saved_model.pb" in os.listdir(empty)


def test_non_timestamped_refuses_non_empty_folder_and_writes_nothing(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty") as info:
        export_core.export_saved_model(
            models.functional_regressor(), str(target), timestamped=False
        )
    assert isinstance(info.value, AssertionError)
    assert files_under(target) == {"keep.txt"}
    assert sorted(os.listdir(tmp_path)) == ["model"]


@pytest.mark.parametrize("serving_only", [False, True])
def test_layout_has_proto_checkpoint_and_json_config(tmp_path, serving_only):
    model = models.functional_regressor()
    path = export_core.export_saved_model(model, str(tmp_path), serving_only=serving_only)
    files = files_under(path)
    assert {"saved_model.pb", "variables/variables.index", "assets/saved_model.json"} <= files
    assert any(f.startswith("variables/variables.data-") for f in files)
    with open(os.path.join(path, "assets", "saved_model.json")) as f:
        assert json.load(f) == json.loads(model.to_json())


@pytest.mark.parametrize("serving_only", [False, True])
def test_as_text_writes_pbtxt_in_every_mode(tmp_path, serving_only, batch):
    import tensorflow as tf

    model = models.functional_regressor()
    path = export_core.export_saved_model(
        model, str(tmp_path), as_text=True, serving_only=serving_only
    )
    files = files_under(path)
    assert "saved_model.pbtxt" in files and "saved_model.pb" not in files
    out = models.tf1_predict(path, {"features": batch})["prediction"]
    assert abs(out - model.predict(batch, verbose=0)).max() < 1e-5
    tags = [["serve"]] if serving_only else [["serve"], ["train"], ["eval"]]
    assert tf.compat.v1.saved_model.contains_saved_model(path)
    text = open(os.path.join(path, "saved_model.pbtxt")).read()
    assert text.count("meta_graphs {") == len(tags)


class NoConfig(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, inputs):
        return self.dense(inputs)

    def get_config(self):
        raise NotImplementedError("no config for this one")


def test_model_without_config_skips_json_with_a_warning(tmp_path, batch, caplog):
    model = NoConfig()
    model(batch)
    with caplog.at_level("WARNING"):
        path = export_core.export_saved_model(model, str(tmp_path), serving_only=True)
    assert "saved_model.json is skipped" in caplog.text
    assert "assets/saved_model.json" not in files_under(path)
    served = models.tf1_predict(path, {"inputs": batch})["output_0"]
    assert abs(served - model(batch).numpy()).max() < 1e-5
