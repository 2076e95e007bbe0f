"""The state Keras keeps outside a layer's weights, carried into a clone.

Preprocessing layers (lookups, TextVectorization, Normalization, ...) keep their
vocabularies, tf-idf weights and statistics through Keras's own per-layer
protocol (``save_own_variables``/``load_own_variables``); lookup tables built from
a vocabulary file re-read the original's file, so every MetaGraph keeps a file
asset rather than a constant copy.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import keras
import tensorflow as tf

from export_core.errors import ExportValidationError
from export_core.tf_internals import tf_private
from export_core.tf_internals.tf_private import SafeModeScope

log = logging.getLogger(__name__)


def copy_layer_state(model: keras.Model, clone: keras.Model, built: bool = True) -> None:
    """Gives the clone's layers the state Keras keeps outside ``model.weights``.

    Preprocessing layers hold state that a config cannot carry and that copying
    weights does not rebuild: an adapted ``Normalization`` recomputes its mean and
    variance in ``finalize_state()``, adapted ``StringLookup``/``IntegerLookup``/
    ``TextVectorization`` keep their vocabulary in a lookup table (and tf-idf
    weights beside it). Keras's own ``.keras`` format moves that state with each
    layer's ``save_own_variables``/``load_own_variables`` and
    ``save_assets``/``load_assets``; so does this, layer by layer, for the layers
    that can hold such state (not for plain layers: their weights are copied
    already, and a LoRA-enabled layer's ``load_own_variables`` would merge its
    adapters into the kernel). ``built=False`` moves only the assets, so that a
    clone that is not built yet can be called. A vocabulary that was
    read from a file is then read from the same file again, so the exported
    graphs keep it as a file in ``assets/`` instead of a constant per MetaGraph.

    Raises:
        ExportValidationError: The clone's stateful layers differ from the model's.
    """
    sources, targets = _stateful_layers(model), _stateful_layers(clone)
    if [type(x) for x in sources] != [type(x) for x in targets]:
        raise ExportValidationError(
            f"The clone of model '{model.name}' has different stateful layers than the "
            f"model ({[type(x).__name__ for x in targets]} vs "
            f"{[type(x).__name__ for x in sources]}); its get_config()/from_config() "
            "must rebuild the same layers in the same order."
        )
    for source, target in zip(sources, targets, strict=True):
        if built:
            store: dict[str, Any] = {}
            source.save_own_variables(store)
            target.load_own_variables(store)
        if hasattr(source, "save_assets") and hasattr(target, "load_assets"):
            _copy_assets(source, target)
        _reuse_vocabulary_file(source, target)


def _stateful_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers that may hold state outside their weights: preprocessing layers
    (``adapt``), layers with assets or that rebuild state in ``finalize_state``."""
    return [
        layer
        for layer in tf_private.sublayers(model)
        if hasattr(layer, "adapt")
        or hasattr(layer, "save_assets")
        or hasattr(layer, "finalize_state")
    ]


def _copy_assets(source: keras.layers.Layer, target: keras.layers.Layer) -> None:
    lookup = getattr(source, "_lookup_layer", source)
    if hasattr(source, "set_vocabulary") and hasattr(lookup, "get_vocabulary"):
        # Lookup layers (StringLookup, IntegerLookup, TextVectorization) move their
        # vocabulary in memory. Through Keras's vocabulary.txt an empty-string
        # token (a legitimate category) is dropped as a trailing blank line, and a
        # padded tf-idf layer's weights no longer fit (Keras 3.15's own
        # save/load_model fails on both).
        vocabulary = source.get_vocabulary(include_special_tokens=True)
        extra = {}
        if getattr(lookup, "output_mode", None) == "tf_idf":
            extra["idf_weights"] = lookup.idf_weights_const.numpy()[: len(vocabulary)]
        target.set_vocabulary(vocabulary, **extra)
        return
    with tempfile.TemporaryDirectory(prefix="keras-export-assets-") as folder:
        source.save_assets(folder)
        target.load_assets(folder)


def _reuse_vocabulary_file(source: keras.layers.Layer, target: keras.layers.Layer) -> None:
    """Points a lookup clone at the vocabulary file its original was built from."""
    initializer = getattr(getattr(source, "lookup_table", None), "_initializer", None)
    if not isinstance(initializer, tf.lookup.TextFileInitializer):
        return
    filename = initializer._filename  # noqa: SLF001 - a tracked Asset, or a str
    path = filename.asset_path if isinstance(filename, tf.saved_model.Asset) else filename
    path = path.numpy().decode() if hasattr(path, "numpy") else str(path)
    if not tf.io.gfile.exists(path):
        log.warning(
            "Layer '%s' was built from vocabulary file %s, which no longer exists; the "
            "export embeds the vocabulary the layer holds in memory instead.",
            source.name,
            path,
        )
        return
    with SafeModeScope(False):  # the caller's own file, already loaded once
        target.set_vocabulary(path)
