"""What an export leaves in the process: the collector's work, TensorFlow's gradients.

Two process-wide effects are bounded for the duration of an export (``export_scope``):

* **The collector's work.** A process that has imported TensorFlow and Keras and
  built a model holds some 400,000 tracked objects (ResNet50); every full
  collection walks all of them, about 0.4 s each time, whether it is one of ours
  (``steps.build``'s after freeing a clone, ``verify``'s after each TF2 load) or one Python
  starts on its own while a graph is traced or loaded. Everything alive when an
  export starts outlives it anyway (the model, the modules), so it is moved to the
  collector's permanent generation (``gc.freeze``): collections walk only what the
  export made, the clones, graphs and loaded SavedModels they exist to free.
* **TensorFlow's gradient registry.** Tracing a Keras train step registers a
  ``tf.custom_gradient`` function per trace (the optimizer's all-reduce under the
  default distribution strategy), in a registry that is never emptied, and that
  function holds the whole traced train graph: 100-500 MB for MobileNetV2 or
  ResNet50, left behind by every export of a long-lived worker. The MetaGraphs
  carry the gradient functions they need (traced when they are built), so the
  registrations made during the scope are dropped once the MetaGraphs are built
  (``release_gradients``, before verification loads its own copies) and when it
  ends.

Nested and concurrent exports share one scope: it starts with the first and ends
with the last, and ``release_gradients`` waits for the scope's end while another
export is in it, so no export's registrations are dropped while it still builds.
Garbage that existed before the scope is collected after it.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

from export_core.tf_internals.tf_private import custom_gradient_names, drop_gradients

_lock = threading.Lock()
_depth = 0
_gradients_before: set[str] = set()


@contextlib.contextmanager
def export_scope() -> Iterator[None]:
    """Bounds an export's process-wide effects (see the module docstring)."""
    global _depth, _gradients_before
    with _lock:
        _depth += 1
        if _depth == 1:
            _gradients_before = custom_gradient_names()
            gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()
                drop_gradients(custom_gradient_names() - _gradients_before)


def release_gradients() -> None:
    """Drops the gradient registrations made so far in the scope, unless another export
    shares it (then its end does); for an export whose MetaGraphs are built."""
    global _gradients_before
    with _lock:
        if _depth == 1:
            now = custom_gradient_names()
            drop_gradients(now - _gradients_before)
            _gradients_before &= now
