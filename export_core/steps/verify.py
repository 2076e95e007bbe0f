"""Step 6, verify-reload: load what was written with TensorFlow's own loaders.

Both loaders are used because users meet both: the TF1 session loader is the path
``saved_model_cli run`` and TensorFlow Serving take; ``tf.saved_model.load`` is
the TF2 one. Serving predictions must match the in-memory model.

By default every MetaGraph is loaded in a TF1 session and the serving MetaGraph
is also loaded with ``tf.saved_model.load``; both loaders' serving outputs are
compared. The serving loads restore the checkpoint; the train and eval
MetaGraphs are imported and their init ops run, and what their restore op would
assign is checked against the checkpoint's index (``restore_check``): reading
the checkpoint once more, with the optimizer's slots, would only show that
TensorFlow reads back what it has just written, and would hold three copies of
the weights for Adam. ``full=True``
restores every MetaGraph in the TF1 session and also loads the train and eval
MetaGraphs with ``tf.saved_model.load``. That re-imports the same graphs through
TF2's v1 loader, which turns every library function into a Python graph and
prunes one function per signature: for ResNet50 with Adam it costs about 7 s
more, as much as everything else in verification.

Two loads run at a time (see ``THREADS``): one restores and runs (TensorFlow's
C++, off the GIL) while the other imports its graph. Graph imports take turns
(``_IMPORT_LOCK``), and so, once a second copy of the weights would matter, do the
loads that restore them (see ``THREADS``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from export_core import constants as c
from export_core.artifacts.warmup import check_warmup
from export_core.errors import VerificationError
from export_core.model.signature import (
    InputSignature,
    TensorInfo,
)
from export_core.steps.golden import reference_for
from export_core.steps.parity import RTOL, compare
from export_core.steps.restore_check import Restored, check_against_checkpoint, restore_plan
from export_core.tf_internals.heap import export_scope
from export_core.tf_internals.tf_private import parse_saved_model, tf1_session_load

# Two loads at a time overlap one's graph import with the other's restore and run
# (ResNet50, all modes: 5.9 s -> 4.1 s). A load that restores holds a copy of the
# weights; restoring loads take turns (the gate in verify_reload) when a second copy
# would matter: from OVERLAP_BELOW bytes of checkpoint when nothing else runs beside
# them (serving-only ResNet50: 120 MB lower peak, 0.4 s slower), and from
# PARALLEL_BELOW in an all-modes export, whose train and eval checks run beside them
# and whose imported graphs, not the copies, set the peak (ResNet50: taking turns
# cost 0.6 s for the same peak).
THREADS = 2
OVERLAP_BELOW = 64 * 2**20
PARALLEL_BELOW = 512 * 2**20
# Graph imports take turns: two threads importing graphs at once (the TF1 session
# loader and tf.saved_model.load's v1 path) crashed TensorFlow 2.21 in its graph
# importer (segmentation fault in importer._FindAttrInOpDef, seen once in a CI run).
_IMPORT_LOCK = threading.Lock()
FULL = "full"  # run_export(verify=FULL): every MetaGraph with both loaders


@dataclass(frozen=True)
class ParityReport:
    """Outcome of verify-reload.

    Attributes:
        max_abs_diff: Largest |saved - in-memory| over all outputs and loaders.
        per_output: The same, per serving output name.
        loaders: The loaders that loaded and ran, e.g. ``("tf1:serve", "tf2:serve")``.
        samples: How many examples were compared.
        synthesized: Whether the inputs were synthesized from the signature.
        tolerance: The rtol = atol the outputs were compared with (see ``parity``).
        training: What ``training_check`` compared (train and eval against Keras's
            own steps), or why it did not run; None when it was not asked for.
    """

    max_abs_diff: float
    per_output: Mapping[str, float]
    loaders: tuple[str, ...]
    samples: int
    synthesized: bool
    tolerance: float = RTOL
    training: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_output"] = dict(self.per_output)
        data["loaders"] = list(self.loaders)
        return data


@export_scope()
def verify_reload(
    saved_model_dir: str,
    model: keras.Model | None,
    inputs: InputSignature,
    modes: tuple[str, ...],
    sample_inputs: Any = None,
    full: bool = False,
) -> ParityReport:
    """Reloads the MetaGraphs with TensorFlow's loaders and checks serving parity.

    Every MetaGraph loads in a TF1 session, the serving one also through
    ``tf.saved_model.load``; ``full`` loads every MetaGraph with both loaders.
    The inputs are ``sample_inputs`` if given, else the version's own
    ``golden.npz`` (see ``steps.golden``), else synthesized from the signature. With
    ``model=None`` (re-verifying a published version without its source) the
    outputs stored in ``golden.npz`` are the reference, or, for a version that has
    none, the TF1 loader's outputs, which the TF2 loader must then match.

    Raises:
        VerificationError: A MetaGraph does not load or run, or predictions differ
            from the in-memory model by more than rtol=atol=1e-5.
    """
    ref = reference_for(saved_model_dir, model, inputs, sample_inputs)
    check_warmup(saved_model_dir, inputs)  # TF Serving's warm-up requests, when written
    loads = _loads(saved_model_dir, modes, ref.feeds, full)
    expected = ref.expected_outputs()  # the model's own call, once the loads are planned
    with ThreadPoolExecutor(THREADS, thread_name_prefix="verify-reload") as pool:
        futures = {name: pool.submit(load) for name, load in loads.items()}
        outputs = {name: future.result() for name, future in futures.items()}
    results = {name: got for name, got in outputs.items() if got is not None}
    per_output = compare(expected or results["tf1:serve"], results, ref.tolerance)
    return ParityReport(
        max_abs_diff=max(per_output.values(), default=0.0),
        per_output=per_output,
        loaders=tuple(loads),
        samples=int(next(iter(ref.feeds.values())).shape[0]) if ref.feeds else 0,
        synthesized=ref.synthesized,
        tolerance=ref.tolerance,
    )


def _loads(
    path: str, modes: tuple[str, ...], feeds: dict, full: bool
) -> dict[str, Callable[[], dict | None]]:
    """Each load verification runs, by name (``tf1:serve``...), in the order the pool
    takes them (see ``THREADS`` and ``_interleaved``)."""
    saved_model = parse_saved_model(path)  # once, for every TF1 load
    meta_graphs = saved_model.meta_graphs
    # Held by a load while it holds a copy of the weights; see THREADS for when not.
    checks_beside = not full and any(mode != c.SERVE for mode in modes)
    overlap = _checkpoint_bytes(path) < (PARALLEL_BELOW if checks_beside else OVERLAP_BELOW)
    gate = contextlib.nullcontext() if overlap else threading.Lock()
    restoring: dict[str, Callable[[], dict | None]] = {}
    checking: dict[str, Callable[[], dict | None]] = {}
    for mode in modes:
        tag = c.TAGS[mode][0]
        mode_feeds = feeds if mode == c.SERVE else None
        plan = None if full or mode == c.SERVE else restore_plan(_tagged(meta_graphs, tag))
        (restoring if plan is None else checking)[f"tf1:{tag}"] = (
            lambda t=tag, f=mode_feeds, p=plan: _run_tf1(path, t, f, p, gate, saved_model)
        )
        if full or mode == c.SERVE:
            restoring[f"tf2:{tag}"] = lambda t=tag, f=mode_feeds: _gated(
                gate, _freed, _run_tf2, path, t, f, len(meta_graphs)
            )
    return _interleaved(restoring, checking)


def _checkpoint_bytes(path: str) -> int:
    folder = os.path.join(path, "variables")
    if not os.path.isdir(folder):
        return 0
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))


def _interleaved(first: dict, second: dict) -> dict:
    """The loads in the order the pool takes them: a restoring one, then one that
    only checks its restore (``restore_check``), and so on, so that while one holds
    the weights the other thread has work that does not wait for the gate."""
    a, b = list(first.items()), list(second.items())
    merged = [item for pair in zip(a, b, strict=False) for item in pair]
    n = min(len(a), len(b))
    return dict(merged + a[n:] + b[n:])


def _gated(gate: contextlib.AbstractContextManager, load: Callable[..., Any], *args: Any) -> Any:
    with gate:
        return load(*args)


def _tagged(meta_graphs: Any, tag: str) -> Any:
    return next(m for m in meta_graphs if tag in m.meta_info_def.tags)


def _run_tf1(
    path: str,
    tag: str,
    feeds: dict | None,
    plan: list[Restored] | None = None,
    gate: contextlib.AbstractContextManager | None = None,
    saved_model: Any = None,
) -> dict[str, np.ndarray] | None:
    """Loads (and with ``feeds`` runs) one MetaGraph in a TF1 session; given the
    ``plan`` of its restore, checks it against the index instead of restoring.
    A restoring load holds ``gate`` from its restore until its session is closed."""
    if plan is not None:
        check_against_checkpoint(plan, path, tag)
        try:
            with tf.compat.v1.Session(graph=tf.Graph()) as sess:
                tf1_session_load(sess, path, tag, _IMPORT_LOCK, False, saved_model)
            return None
        except tf.errors.FailedPreconditionError:
            pass  # its init op reads a variable: load it the full way
        except Exception as exc:
            raise _tf1_failed(path, tag, exc) from exc
    try:
        with gate or contextlib.nullcontext(), tf.compat.v1.Session(graph=tf.Graph()) as sess:
            meta_graph = tf1_session_load(sess, path, tag, _IMPORT_LOCK, True, saved_model)
            if feeds is None:
                return None
            signature = meta_graph.signature_def[c.SIGNATURE_KEYS[c.SERVE]]
            fetches = {k: v.name for k, v in signature.outputs.items()}
            feed_dict = {signature.inputs[k].name: v for k, v in feeds.items()}
            return sess.run(fetches, feed_dict)
    except Exception as exc:
        raise _tf1_failed(path, tag, exc) from exc


def _tf1_failed(path: str, tag: str, exc: BaseException) -> VerificationError:
    return VerificationError(
        f"The '{tag}' MetaGraph of {path} failed in the TF1 session loader "
        f"(the path of saved_model_cli and TensorFlow Serving): {exc}"
    )


def _freed(load: Callable[..., Any], *args: Any) -> Any:
    """Runs a TF2 load and collects what it loaded before the next load starts.

    The object ``tf.saved_model.load`` returns holds reference cycles: without a
    collection its variables (a copy of every weight) stay alive while the next
    MetaGraph restores its own.
    """
    try:
        return load(*args)
    finally:
        gc.collect()


def _run_tf2(path: str, tag: str, feeds: dict | None, n_graphs: int):
    # A single-MetaGraph SavedModel must load without tags= (as TFSMLayer does);
    # with several, the TF2 loader requires them.
    try:
        with _IMPORT_LOCK:
            loaded = (
                tf.saved_model.load(path) if n_graphs == 1 else tf.saved_model.load(path, [tag])
            )
        if feeds is None:
            return None
        fn = loaded.signatures[c.SIGNATURE_KEYS[c.SERVE]]
        out = fn(**{k: tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}
    except Exception as exc:
        raise VerificationError(
            f"The '{tag}' MetaGraph of {path} failed in tf.saved_model.load: {exc}"
        ) from exc


def inputs_from_saved_model(path: str) -> InputSignature:
    """The serving inputs of a written SavedModel (flat, by name)."""
    from export_core.artifacts.saved_model import describe_saved_model

    for meta_graph in describe_saved_model(path)["meta_graphs"]:
        if c.SERVE in meta_graph["tags"]:
            signature = meta_graph["signatures"][c.SIGNATURE_KEYS[c.SERVE]]
            tensors = tuple(TensorInfo.from_dict(t) for t in signature["inputs"])
            return InputSignature.by_name(tensors)
    raise VerificationError(f"{path} has no '{c.SERVE}' MetaGraph.")
