"""The golden forward pass: the model's own eager call, holding only live activations.

The golden outputs are the reference verify-reload compares the SavedModel with,
so they come from the in-memory model's eager call, ``model(x, training=False)``:
a layer that behaves differently once traced must show up as a difference. A
Functional model's call (``Function._run_through_graph``) keeps every layer's
output until it returns: for ResNet50 on 4 images of 224×224 about 577 MB, more
than its weights. ``eager_call`` makes the very same call, through Keras's
``Layer.__call__`` and ``Functional.call`` (input standardization, masks, the
training flag), and swaps in, for that one call, a graph walk that runs the same
nodes in the same order but drops each intermediate tensor once its last consumer
has run. Values are identical (the same eager ops on the same tensors); only the
memory differs. Anything else (a subclassed model, Sequential without a graph) is
called as it is.
"""

from __future__ import annotations

import threading
import types
from collections import Counter
from typing import Any

import keras

from export_core.tf_internals.tf_private import Functional, keras_tree

_lock = threading.Lock()


def eager_call(model: Any, inputs: Any) -> Any:
    """``model(inputs, training=False)``, freeing each activation once it is consumed."""
    graph = _functional_of(model)
    if graph is None:
        return model(inputs, training=False)
    with _lock:  # one swapped-in walk at a time on a given model
        graph._run_through_graph = types.MethodType(_walk_freeing, graph)
        try:
            return model(inputs, training=False)
        finally:
            del graph._run_through_graph


def _functional_of(model: Any) -> Any | None:
    """The Functional graph ``model`` calls, when Keras's own walk is what runs."""
    graph = getattr(model, "_functional", None) if type(model) is keras.Sequential else model
    if type(graph) is not Functional or "_run_through_graph" in vars(graph):
        return None
    if not hasattr(graph, "_nodes_by_depth") or not hasattr(graph, "_get_operation_for_node"):
        return None
    return graph


def _walk_freeing(self: Any, inputs: Any, operation_fn: Any = lambda op: op, call_fn=None):
    """``Function._run_through_graph`` (Keras 3.15), dropping spent intermediates."""
    inputs = keras_tree.flatten(inputs)
    tensor_dict = {id(x): y for x, y in zip(self.inputs, inputs, strict=False)}
    depths = sorted(self._nodes_by_depth, reverse=True)
    nodes = [n for d in depths for n in self._nodes_by_depth[d] if n.operation and not n.is_input]
    uses = Counter(id(x) for node in nodes for x in node.input_tensors)
    keep = {id(x) for x in self.outputs}
    for node in nodes:
        if any(id(x) not in tensor_dict for x in node.input_tensors):
            continue  # not computable: skipped, as Keras does
        args, kwargs = node.arguments.fill_in(tensor_dict)
        op = operation_fn(self._get_operation_for_node(node) if call_fn is None else node.operation)
        outputs = call_fn(op, *args, **kwargs) if call_fn is not None else op(*args, **kwargs)
        del args, kwargs
        for x, y in zip(node.outputs, keras_tree.flatten(outputs), strict=False):
            tensor_dict[id(x)] = y
        del outputs
        for x in node.input_tensors:
            uses[id(x)] -= 1
            if uses[id(x)] == 0 and id(x) not in keep:
                tensor_dict.pop(id(x), None)
    missing = [i for i, x in enumerate(self.outputs) if id(x) not in tensor_dict]
    if missing:
        raise ValueError(f"Outputs {missing} of {self.name} are not connected to its inputs")
    outputs = [tensor_dict[id(x)] for x in self.outputs]
    return keras_tree.pack_sequence_as(self._outputs_struct, outputs)
