"""An export leaves the process as it found it: no frozen heap, no graphs held.

Tracing a Keras train step registers a ``tf.custom_gradient`` function in
TensorFlow's process-wide gradient registry, and that function holds the whole
traced train graph; an export of a long-lived worker must not leave one behind
per export (see ``export_core.tf_internals.heap``).
"""

from __future__ import annotations

import gc

import export_core
from export_core.tf_internals.tf_private import custom_gradient_names
from tests import models


def traced_graphs() -> list[str]:
    gc.collect()
    return [o.name for o in gc.get_objects() if type(o).__name__ == "FuncGraph"]


def test_exports_leave_no_graph_no_gradient_and_no_frozen_heap(tmp_path):
    model = models.functional_regressor()
    x, y = models.regression_batch()
    model.train_on_batch(x, y)
    export_core.run_export(model, str(tmp_path / "warm"))
    gradients, graphs = custom_gradient_names(), traced_graphs()
    for i in range(3):
        export_core.run_export(model, str(tmp_path / f"m{i}"))
        assert gc.get_freeze_count() == 0, "the pre-existing heap is unfrozen again"
    assert custom_gradient_names() == gradients, "no gradient registration left behind"
    assert traced_graphs() == graphs, "no traced train graph left behind"
