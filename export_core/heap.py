"""Keeping the garbage collector's work in proportion to what an export creates.

A process that has imported TensorFlow and Keras and built a model holds some
400,000 tracked objects (ResNet50); every full collection walks all of them,
about 0.4 s each time, whether it is one of ours (``staged.release_clones``,
``verify``'s after each TF2 load) or one Python starts on its own while a graph
is traced or loaded. Everything alive when an export starts outlives it anyway
(the model, the modules), so ``frozen_heap`` moves it to the collector's
permanent generation for the export's duration (``gc.freeze``): collections then
walk only what the export made — the clones, graphs and loaded SavedModels they
exist to free. Nested and concurrent exports freeze once, on the first entry, and
unfreeze on the last exit; garbage that existed before the first entry is
collected after it.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Freezes what is alive now for the duration of the block (see the module docs)."""
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1:
            gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.unfreeze()
