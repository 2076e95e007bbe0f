"""Models trained on another Keras backend (JAX, torch), loaded here under TensorFlow.

A ``.keras`` file is backend-neutral except where Keras records a backend's own class:
torch's optimizers are subclasses in ``keras.src.backend.torch.optimizers`` (e.g.
``torch_adam.Adam``), and ``model.save`` under torch writes that module into the
compile config, which TensorFlow's Keras cannot import. Their state (iterations,
moments) is stored as for any optimizer, so the portable class of the same name in
``keras.optimizers`` takes it as is. Layers that run another framework's code
(``TorchModuleWrapper``) cannot move: they are refused by name.
"""

from __future__ import annotations

import json
import re
import zipfile
from typing import Any

import keras

from export_core.errors import UnsupportedModelError

_BACKEND_MODULE = re.compile(r"^keras\.src\.backend\.(?P<backend>[a-z_]+)\.")
# Layers whose computation is another framework's code: TensorFlow cannot trace it.
_FRAMEWORK_LAYERS = {"TorchModuleWrapper": "torch"}
_PORTABLE_HOMES = ((".optimizers.", keras.optimizers),)


def portable_objects(archive: str, source: str) -> dict[str, Any]:
    """Custom objects that load ``archive``'s backend-specific classes under this backend.

    Args:
        archive: A local ``.keras`` file.
        source: Its URI, for messages.

    Returns:
        ``{class name: portable class}`` for every class recorded with another
        backend's module (empty for a file saved under TensorFlow).

    Raises:
        UnsupportedModelError: A layer runs another framework's code, or a
            backend-specific class has no portable equivalent; the message names it.
    """
    with zipfile.ZipFile(archive) as handle:
        config = json.loads(handle.read("config.json"))
    found: dict[str, Any] = {}
    for entry in _objects(config):
        name, module = entry.get("class_name"), str(entry.get("module") or "")
        framework = _FRAMEWORK_LAYERS.get(name)
        if framework:
            layer = (entry.get("config") or {}).get("name", name)
            raise UnsupportedModelError(
                f"Layer '{layer}' of {source} is a {name}: it runs {framework} code, which "
                "TensorFlow cannot trace into a SavedModel. Rewrite it with Keras layers "
                "(or keras.ops), retrain or copy its weights, and export that model."
            )
        match = _BACKEND_MODULE.match(module)
        if match is None or match["backend"] == keras.config.backend():
            continue
        found[name] = _portable(name, module, match["backend"], source)
    return found


def _portable(name: str, module: str, backend: str, source: str) -> Any:
    for marker, home in _PORTABLE_HOMES:
        if marker in f"{module}." and hasattr(home, name):
            return getattr(home, name)
    raise UnsupportedModelError(
        f"{source} uses {module}.{name}, a class of the {backend} backend with no "
        f"TensorFlow equivalent in Keras. Save the model under TensorFlow, or without "
        "that object (e.g. model.compile with a keras.optimizers optimizer), and export it."
    )


def _objects(value: Any):
    """Every serialized object (a dict with ``class_name``) in a config, depth first."""
    if isinstance(value, dict):
        if "class_name" in value:
            yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)
