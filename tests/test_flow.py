"""The Prefect flow runs every step as a task on a real Prefect API and publishes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from numpy.testing import assert_allclose

from tests import models

STEP_TASKS = {
    "validate",
    "clone-per-mode",
    "trace",
    "write-checkpoint",
    "write-proto",
    "verify-reload",
    "publish",
}


@pytest.fixture(scope="module")
def prefect_api():
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def task_names(flow_run_id) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return {r.name.rsplit("-", 1)[0] for r in runs if r.state and r.state.is_completed()}


def test_flow_exports_a_keras_file_through_every_step(prefect_api, tmp_path):
    from flows import export_keras_model

    model = models.functional_regressor()
    source = tmp_path / "model.keras"
    model.save(source)
    x, _ = models.regression_batch()
    np.savez(tmp_path / "golden.npz", features=x)
    state = export_keras_model(
        model=str(source),
        destination=str(tmp_path / "registry"),
        sample_inputs=str(tmp_path / "golden.npz"),
        return_state=True,
    )
    result = state.result()
    assert result["modes"] == ["serve", "train", "eval"]
    assert result["parity"]["samples"] == len(x) and not result["parity"]["synthesized"]
    assert str(result["version"]) == os.path.basename(result["path"])
    assert {"validate", "clone", "trace", "verify_reload", "publish"} <= set(result["seconds"])
    assert STEP_TASKS <= task_names(state.state_details.flow_run_id)
    served = models.tf1_predict(result["path"], {"features": x})["prediction"]
    assert_allclose(served, model.predict(x, verbose=0), atol=1e-5)


def test_flow_rejects_bad_json_parameters_and_publishes_nothing(prefect_api, tmp_path):
    from export_core import CustomObjectError, ExportValidationError
    from flows import export_keras_model

    source = tmp_path / "model.keras"
    models.functional_regressor().save(source)
    registry = tmp_path / "registry"
    with pytest.raises(ExportValidationError, match="input_signature\\[0\\]"):
        export_keras_model(
            model=str(source), destination=str(registry), input_signature=[{"dtype": "float32"}]
        )
    with pytest.raises(CustomObjectError, match="cannot be imported"):
        export_keras_model(
            model=str(source), destination=str(registry), custom_objects=["no_such_module:thing"]
        )
    with pytest.raises(ExportValidationError, match="does not exist"):
        export_keras_model(model=str(tmp_path / "missing.keras"), destination=str(registry))
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip")
    with pytest.raises(ExportValidationError, match="could not be loaded"):
        export_keras_model(model=str(tmp_path / "corrupt.keras"), destination=str(registry))
    assert not registry.exists()
