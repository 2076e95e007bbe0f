"""The serving-signature gate, lineage in the manifest, and TF Serving warm-up requests."""

from __future__ import annotations

import json
import os

import keras
import pytest

import export_core
from export_core.registry import signature_gate
from export_core.registry.signature_gate import SignatureChangeError
from tests import models


def regressor(input_name: str = "features", dtype: str = "float32", extra_output: bool = False):
    inputs = keras.Input((3,), name=input_name, dtype=dtype)
    hidden = keras.layers.Dense(4, name="hidden")(keras.ops.cast(inputs, "float32"))
    outputs = [keras.layers.Dense(2, name="prediction")(hidden)]
    if extra_output:
        outputs.append(keras.layers.Dense(1, name="confidence")(hidden))
    model = keras.Model(inputs, outputs if extra_output else outputs[0])
    model.compile("adam", "mse")
    return model


def manifest(path: str) -> dict:
    with open(os.path.join(path, "export_manifest.json"), encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_name": "pixels"}, r"input 'features' removed.*input 'pixels' added"),
        ({"dtype": "float64"}, r"input 'features': dtype float32 -> float64"),
    ],
)
def test_breaking_signature_changes_are_refused_and_nothing_is_published(change, message, tmp_path):
    base = str(tmp_path / "registry")
    first = export_core.export_saved_model(regressor(), base)
    with pytest.raises(SignatureChangeError, match=message):
        export_core.export_saved_model(regressor(**change), base)
    assert sorted(os.listdir(base)) == [os.path.basename(first)], "nothing published"
    forced = export_core.run_export(regressor(**change), base, allow_breaking_signature=True)
    assert forced.version > int(os.path.basename(first))


def test_an_added_output_passes_the_gate_and_is_named(tmp_path):
    base = str(tmp_path / "registry")
    export_core.export_saved_model(regressor(), base)
    result = export_core.run_export(regressor(extra_output=True), base)
    assert result.version is not None
    lineage = manifest(result.path)["lineage"]
    assert lineage["parent_version"] is not None


def test_compare_signatures_rules_for_shapes():
    def sig(shape, out_shape):
        return {"serving_default": {
            "inputs": [{"name": "x", "shape": shape, "dtype": "float32"}],
            "outputs": [{"name": "y", "shape": out_shape, "dtype": "float32"}],
        }}  # fmt: skip

    assert signature_gate.compare(sig([None, 3], [None, 2]), sig([None, None], [None, 2]), "v").ok
    assert not signature_gate.compare(
        sig([None, None], [None, 2]), sig([None, 3], [None, 2]), "v"
    ).ok
    assert not signature_gate.compare(sig([None, 3], [None, 2]), sig([None, 3], [None, 5]), "v").ok
    assert signature_gate.compare(sig([None, 3], [None, None]), sig([None, 3], [None, 2]), "v").ok


def test_lineage_records_packages_metadata_and_no_prefect_outside_it(tmp_path):
    result = export_core.run_export(
        models.functional_regressor(), str(tmp_path / "r"), metadata={"auc": 0.91, "data": "v7"}
    )
    lineage = manifest(result.path)["lineage"]
    assert lineage["metadata"] == {"auc": 0.91, "data": "v7"}
    assert {"keras", "keras-savedmodel-export", "python"} <= set(lineage["packages"])
    assert "tensorflow" in lineage["packages"] or "tensorflow-cpu" in lineage["packages"]
    assert "prefect" not in lineage and lineage["parent_version"] is None
    with pytest.raises(export_core.ExportValidationError, match="metadata must be"):
        export_core.run_export(models.functional_regressor(), str(tmp_path / "r"), metadata=[1])


def test_warmup_requests_parse_and_match_the_signature(tmp_path):
    from export_core.artifacts.warmup import WARMUP, read_warmup

    model = models.functional_regressor()
    result = export_core.run_export(model, str(tmp_path / "r"), warmup=True)
    assert WARMUP in manifest(result.path)["files"]
    records = read_warmup(result.path)
    assert len(records) == 1
    request = records[0].predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    assert set(request.inputs) == {"features"}
    assert list(request.inputs["features"].tensor_shape.dim)[1].size == 3
