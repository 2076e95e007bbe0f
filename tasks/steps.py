"""One Prefect task per export step: the steps of ``export_core.sequence``, wrapped.

The flow hands ``PrefectRunner`` to ``export_core.sequence.run_steps``, which runs
each step as the task of the same name (the steps and their order are listed once,
in ``export_core.sequence``): what each step does and holds is the core's, Prefect
only adds a task run around each (visible in the UI, logged, retried when the step
does I/O). A task hands its step's value back to the
sequence directly and returns nothing to Prefect, which so keeps no reference to a
clone or a traced graph once the sequence lets go of it. Only I/O steps retry: the
signature gate (a manifest read), the upload to staging and the publish;
TensorFlow steps are neither retried nor cached (``NO_CACHE``: they take models).

The steps that touch storage resolve the credentials themselves, when they run
(``StorageAccess.storage_options``, see ``keras_export.credentials``); their errors
name the block used, never its values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from export_core.errors import ExportError
from export_core.model import source_file
from export_core.sequence import STEPS, STORAGE_STEPS, StepRunner
from keras_export.credentials import StorageAccess

T = TypeVar("T")
RETRIES = {"signature-gate": 1, "stage": 2, "publish": 2}  # I/O only


def _run(step: Callable[[], None]) -> None:
    step()


STEP_TASKS = {
    name: task(
        name=name, cache_policy=NO_CACHE, retries=RETRIES.get(name, 0), retry_delay_seconds=2
    )(_run)
    for name in STEPS
}


class PrefectRunner(StepRunner):
    """Runs each step of the sequence as the Prefect task of its name."""

    def __init__(self, access: StorageAccess) -> None:
        self.access = access

    def run(self, name: str, step: Callable[[], T]) -> T:
        box: list[T] = []
        STEP_TASKS[name](self._boxed(name, step, box))
        return box[0]

    def submit(self, name: str, step: Callable[[], T]) -> Any:
        box: list[T] = []
        return _Boxed(STEP_TASKS[name].submit(self._boxed(name, step, box)), box)

    def attempt(self) -> int:
        """The task's attempt, or the flow run's (a retried run is a retried publish)."""
        from prefect.runtime import flow_run, task_run

        return max(task_run.run_count or 1, flow_run.run_count or 1)

    def log(self, level: int, message: str) -> None:
        get_run_logger().log(level, "%s", message)

    def progress(self, done: int, total: int) -> None:
        get_run_logger().info(
            "Uploaded %d / %d bytes (%.0f%%)", done, total, 100.0 * done / max(total, 1)
        )

    def _boxed(self, name: str, step: Callable[[], T], box: list[T]) -> Callable[[], None]:
        def call() -> None:
            box.clear()  # a retry starts afresh
            if name in STORAGE_STEPS:
                with naming_credentials(self.access):
                    box.append(step())
            else:
                box.append(step())

        return call


class _Boxed:
    """A submitted step's future, answering with the step's own value."""

    def __init__(self, future: Any, box: list) -> None:
        self.future, self.box = future, box

    def result(self) -> Any:
        self.future.result()  # raises the step's error
        return self.box[0]


@contextlib.contextmanager
def naming_credentials(access: StorageAccess) -> Iterator[None]:
    """A step's errors say which credentials it used (never their values).

    Without credentials the error goes on as it is; with them, a new error of the same
    type says which, caused by the original (never by itself: a cycle in ``__cause__``
    hangs the error reporters that walk it).
    """
    try:
        yield
    except ExportError as exc:
        if not access.credentials:
            raise
        raise type(exc)(f"{exc} (credentials: {access.describe()})") from exc


@task(name="load-source", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def load_source(uri: str | None, custom_objects: dict, access: StorageAccess, samples: str | None):
    """The ``.keras`` model, its ``{"uri", "sha256", "fingerprint"}`` and the golden inputs.

    ``uri=None`` (a model given in process) loads only the golden inputs.
    """
    with naming_credentials(access):
        options = access.storage_options() if uri or samples else {}
        model, info = (
            source_file.load_keras_source_with_info(uri, custom_objects, options)
            if uri
            else (None, None)
        )
        return model, info, source_file.load_sample_inputs(samples, options)
