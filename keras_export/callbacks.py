"""``ExportCallback``: from ``model.fit`` to a published version, used like ``ModelCheckpoint``.

    model.fit(x, y, epochs=10, callbacks=[ExportCallback(
        "s3://ml/runs/churn.keras", "s3://registry/churn", credentials="aws-credentials/trainer",
        monitor="val_loss", save_best_only=True)])

At the end of training (or, with ``save_best_only``, at each epoch that improves
``monitor``, as ``ModelCheckpoint(save_best_only=True)`` does) the callback writes the
``.keras`` file to ``model_uri`` (any fsspec URI). When training ends it either

* announces it (default): emits ``training.run.completed`` with the model's URI, the
  destination and the training metrics, so the ``on-training-completed`` deployment
  exports it (``deployments/serve.py``, ``prefect.yaml``), or
* exports it in this process (``export=True``): ``export_core.run_export``.

Either way the metrics (the epoch's logs, the epoch, and ``metadata``) are recorded
in the version's lineage (``metadata`` in its manifest). An epoch costs no more than
the save itself: nothing else runs per epoch. Prefect being unreachable never fails
``fit``: the model file is written, and a warning says what was not announced. A
model that cannot be written to ``model_uri`` is written to a local file instead and
the warning names it.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any

import keras

from export_core.errors import ExportValidationError
from export_core.storage import Destination
from keras_export.training_event import TRAINING_COMPLETED, emit_and_confirm

MAX_WORDS = ("acc", "auc", "precision", "recall", "f1", "iou")


class ExportCallback(keras.callbacks.Callback):
    """Writes the trained model to ``model_uri`` and announces or exports it.

    Args:
        model_uri: Where the ``.keras`` file goes: a path or fsspec URI ending in
            ``.keras``; ``{epoch}`` and log names format it as in ``ModelCheckpoint``
            (``"runs/churn-{epoch:02d}.keras"``).
        destination: The base the version is published under.
        export: Export in this process (``run_export``) instead of announcing.
        monitor: The log to watch with ``save_best_only`` (e.g. ``"val_loss"``).
        mode: ``"min"``, ``"max"`` or ``"auto"`` (losses and errors go down; accuracy,
            AUC, precision, recall, F1 and IoU go up).
        save_best_only: Save at each epoch that improves ``monitor``; the best model
            is what is announced or exported. Otherwise the model is saved once, at
            the end of training.
        credentials: A Prefect block (or a saved one's name, e.g.
            ``"aws-credentials/trainer"``) for ``model_uri`` and, with ``export``, the
            destination.
        storage_options: fsspec options for ``model_uri`` (and the destination).
        metadata: A JSON object recorded with the metrics (dataset version...).
        export_options: More ``run_export`` keywords, with ``export=True``
            (e.g. ``{"keep_versions": 5}``).
        event: The event announced (default ``training.run.completed``).
        announce_timeout: Seconds to wait for the Prefect API before warning.
    """

    def __init__(
        self,
        model_uri: str,
        destination: str,
        *,
        export: bool = False,
        monitor: str | None = None,
        mode: str = "auto",
        save_best_only: bool = False,
        credentials: Any = None,
        storage_options: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        export_options: Mapping[str, Any] | None = None,
        event: str = TRAINING_COMPLETED,
        announce_timeout: float = 15.0,
    ) -> None:
        super().__init__()
        from export_core.artifacts.lineage import check_metadata

        self.model_uri = check_model_uri(model_uri)
        if not isinstance(destination, str) or not destination:
            raise ExportValidationError(
                f"destination must be a path or URI of a version base, received {destination!r}."
            )
        self.destination, self.export, self.event = destination, bool(export), event
        self.monitor, self.save_best_only = monitor, bool(save_best_only)
        self.mode = check_mode(mode, monitor, save_best_only)
        self.credentials, self.options = credentials, dict(storage_options or {})
        self.metadata = check_metadata(metadata)
        self.export_options = check_export_options(export_options, self.export)
        self.announce_timeout = float(announce_timeout)
        self.best: float | None = None
        self.saved: dict[str, Any] | None = None  # what was written last: uri, sha256, metrics
        self.result: Any = None  # run_export's ExportResult, with export=True
        self.announced: dict[str, Any] | None = None  # the event's payload, once sent
        self._epoch = -1
        self._resolved: dict[str, Any] | None = None  # the block's options, this fit

    # Keras hooks ---------------------------------------------------------------------

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self.best, self.saved, self.result, self.announced = None, None, None, None
        self._epoch, self._resolved = -1, None

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._epoch = epoch
        if not self.save_best_only:
            return
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(
                f"ExportCallback monitors {self.monitor!r}, which epoch {epoch + 1} did not log "
                f"(it logged {sorted(logs or {})}); nothing saved for this epoch.",
                stacklevel=2,
            )
            return
        if self._improves(float(value)):
            self.best = float(value)
            self._save(epoch, logs)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._epoch < 0:
            return  # no epoch ran (stopped before the first): nothing trained to publish
        if self.saved is None:
            if self.save_best_only:
                warnings.warn(
                    f"ExportCallback saw no value of {self.monitor!r}; saving the final model.",
                    stacklevel=2,
                )
            self._save(self._epoch, logs)
        if self.saved is None or not self.saved["published_uri"]:
            return  # the model could not reach model_uri: the warning named the local file
        try:
            self._export() if self.export else self._announce()
        finally:
            _remove_tree(os.path.dirname(self.saved["local"]))  # it reached model_uri

    # Steps ---------------------------------------------------------------------------

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def _save(self, epoch: int, logs: Mapping[str, Any] | None) -> None:
        """The save itself: the ``.keras`` file, written whole or not at all."""
        metrics = plain_metrics(logs)
        try:
            uri = self.model_uri.format(epoch=epoch + 1, **metrics)
        except (KeyError, IndexError, ValueError) as exc:
            raise ExportValidationError(
                f"model_uri {self.model_uri!r} names {exc}, which is neither 'epoch' nor a "
                f"log of this epoch ({sorted(metrics)}); e.g. 'runs/churn-{{epoch:02d}}.keras'."
            ) from exc
        local = os.path.join(tempfile.mkdtemp(prefix="keras-export-fit-"), "model.keras")
        self.model.save(local)
        with open(local, "rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        published = self._write(local, uri)
        if self.saved and self.saved.get("local") and self.saved["local"] != local:
            _remove_tree(os.path.dirname(self.saved["local"]))
        self.saved = {
            "uri": uri,
            "published_uri": published,
            "sha256": sha256,
            "local": local,
            "metrics": metrics,
            "epoch": epoch + 1,
        }

    def _write(self, local: str, uri: str) -> str | None:
        """Copies the file to ``uri``; on failure keeps it locally and warns."""
        try:
            dest = Destination.parse(uri, self._storage_options())
            if dest.is_local:
                os.makedirs(os.path.dirname(dest.path) or ".", exist_ok=True)
                partial = os.path.join(
                    os.path.dirname(dest.path) or ".", f".{os.path.basename(dest.path)}.partial"
                )
                shutil.copyfile(local, partial)
                os.replace(partial, dest.path)  # pollers of the folder never see half a file
            else:
                dest.fs.put_file(local, dest.path)
            return uri
        except Exception as exc:  # noqa: BLE001 - a failed copy must not fail fit
            warnings.warn(
                f"ExportCallback could not write the model to {uri} ({exc}); it is kept at "
                f"{local}. Export it with: keras-export export {local} {self.destination}",
                stacklevel=3,
            )
            return None

    def _storage_options(self) -> dict[str, Any]:
        """The options for ``model_uri``; a credentials block is loaded once per ``fit``,
        not at every improving epoch (each load is a call to the Prefect API)."""
        if self.credentials is None:
            return dict(self.options)
        if self._resolved is None:
            from keras_export.credentials import storage_access

            self._resolved = storage_access(self.credentials, self.options).storage_options()
        return dict(self._resolved)

    def lineage_metadata(self) -> dict[str, Any]:
        """What the version's manifest records: the metrics, the epoch, the user's metadata."""
        saved = self.saved or {}
        recorded = {**saved.get("metrics", {}), "epoch": saved.get("epoch")}
        if self.save_best_only:
            recorded["monitor"] = self.monitor
        return {**recorded, **self.metadata}

    def _export(self) -> None:
        from export_core.api import run_export

        saved = self.saved
        model = keras.saving.load_model(saved["local"]) if self.save_best_only else self.model
        options = dict(self.export_options)
        options.setdefault("storage_options", self._storage_options())
        self.result = run_export(
            model,
            self.destination,
            source={"uri": saved["published_uri"], "sha256": saved["sha256"]},
            metadata=self.lineage_metadata(),
            **options,
        )

    def _announce(self) -> None:
        """Emits the event; a Prefect API that is missing or down is a warning, not an error."""
        saved = self.saved
        payload = {
            "model_uri": saved["published_uri"],
            "destination": self.destination,
            "sha256": saved["sha256"],
            "metrics": saved["metrics"],
            "epoch": saved["epoch"],
            "metadata": self.lineage_metadata(),
        }
        name = os.path.basename(saved["published_uri"]).removesuffix(".keras")
        resource = {
            "prefect.resource.id": f"keras-export.training.{name}",
            "prefect.resource.name": name,
        }
        problem = emit_and_confirm(self.event, resource, payload, self.announce_timeout)
        if problem:
            warnings.warn(
                f"ExportCallback wrote {saved['published_uri']} but could not announce it "
                f"({problem}). Export it with: keras-export export {saved['published_uri']} "
                f"{self.destination}",
                stacklevel=3,
            )
        self.announced = payload if not problem else None


def plain_metrics(logs: Mapping[str, Any] | None) -> dict[str, float]:
    """An epoch's logs as JSON numbers (Keras gives NumPy and tensor scalars)."""
    metrics = {}
    for key, value in (logs or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        metrics[str(key)] = number if math.isfinite(number) else None
    return metrics


def check_model_uri(model_uri: Any) -> str:
    if not isinstance(model_uri, str) or not model_uri.endswith(".keras"):
        raise ExportValidationError(
            f"model_uri must be a path or URI ending in .keras (what model.save writes), "
            f"received {model_uri!r}; e.g. 's3://ml/runs/churn.keras'."
        )
    return model_uri


def check_mode(mode: str, monitor: str | None, save_best_only: bool) -> str:
    if save_best_only and not monitor:
        raise ExportValidationError(
            "save_best_only=True needs monitor=, the log that decides the best epoch "
            "(e.g. monitor='val_loss')."
        )
    if mode not in ("auto", "min", "max"):
        raise ExportValidationError(f"mode must be 'auto', 'min' or 'max', received {mode!r}.")
    if mode != "auto" or not monitor:
        return mode
    name = monitor.removeprefix("val_")
    if "loss" in name or "error" in name:
        return "min"
    if any(word in name for word in MAX_WORDS):
        return "max"
    raise ExportValidationError(
        f"Cannot tell whether {monitor!r} should go up or down; pass mode='min' or mode='max'."
    )


def check_export_options(options: Mapping[str, Any] | None, export: bool) -> dict[str, Any]:
    if not options:
        return {}
    if not export:
        raise ExportValidationError(
            "export_options apply to an in-process export (export=True); an announced model "
            "is exported with the deployment's parameters."
        )
    reserved = {"source", "metadata"} & set(options)
    if reserved:
        raise ExportValidationError(
            f"export_options may not set {sorted(reserved)}: the callback records the saved "
            "file as the source and the training metrics as metadata (pass metadata= to add)."
        )
    return dict(options)


def _remove_tree(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
