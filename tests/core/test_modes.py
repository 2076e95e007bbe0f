"""``modes=``: choose the MetaGraphs; ``serving_only`` is ``modes=("serve",)``."""

from __future__ import annotations

import os

import pytest
from tensorflow.python.saved_model import loader_impl

import export_core
from export_core import ExportValidationError
from tests import models


def tags(path: str) -> list[list[str]]:
    return [list(m.meta_info_def.tags) for m in loader_impl.parse_saved_model(path).meta_graphs]


@pytest.mark.parametrize(
    ("modes", "expected"),
    [
        (("serving",), [["serve"]]),
        (["eval", "serve"], [["serve"], ["eval"]]),
        (("serve", "training", "evaluation"), [["serve"], ["train"], ["eval"]]),
    ],
)
def test_modes_choose_the_metagraphs_in_a_fixed_order(modes, expected, tmp_path):
    path = export_core.export_saved_model(
        models.functional_regressor(), str(tmp_path / "r"), modes=modes
    )
    assert tags(path) == expected


@pytest.mark.parametrize(
    ("modes", "match"),
    [(("train",), "lack 'serve'"), (("serve", "predictions"), "must name some of")],
)
def test_bad_modes_are_refused_before_anything_is_written(modes, match, tmp_path):
    with pytest.raises(ExportValidationError, match=match):
        export_core.export_saved_model(models.functional_regressor(), str(tmp_path), modes=modes)
    assert os.listdir(tmp_path) == []


def test_training_modes_of_an_uncompiled_model_say_how_to_fix_it(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ExportValidationError, match=r"not compiled.*modes=\('serve',\)"):
        export_core.export_saved_model(model, str(tmp_path), modes=("serve", "train"))
