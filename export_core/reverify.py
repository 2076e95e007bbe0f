"""Re-verifying a published version, later and anywhere: ``keras-export verify``.

The version's files against its manifest (sha256), every MetaGraph with TensorFlow's
loaders, and serving parity against the outputs its ``golden.npz`` recorded, or
against a model given now (which must take the inputs the version serves).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from export_core import constants as c
from export_core import storage
from export_core.artifacts import signing
from export_core.errors import ExportValidationError, VerificationError
from export_core.registry.signed import check_signed_folder
from export_core.registry.versions import require_folder, require_saved_model


def _model_inputs_for(model: Any, saved: Any, path: str) -> Any:
    """The model's own inputs, when they are the version's serving inputs.

    Raises:
        ExportValidationError: The model takes other inputs (names, ranks, sizes or
            dtypes) than the version serves: it is not the model it was exported from.
    """
    from export_core.model.input_checks import check_compatible
    from export_core.model.signature import infer_input_signature

    try:
        own = infer_input_signature(model)
    except ExportValidationError:
        return saved
    by_name = {t.name: t for t in saved.tensors}
    if sorted(by_name) != sorted(own.names):
        raise ExportValidationError(
            f"Model '{model.name}' takes inputs {list(own.names)}; {path} serves "
            f"{sorted(by_name)}. Pass the model this version was exported from."
        )
    ordered = type(saved)(tuple(by_name[n] for n in own.names), own.layout)
    check_compatible(ordered, own, f"Model '{model.name}' against {path}")
    return own


def verify_saved_model(
    path: str,
    *,
    model: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    progress=None,
    full: bool = False,
    public_key: Any = None,
) -> dict[str, Any]:
    """Re-checks a published version: manifest hashes, TF's loaders, optional parity.

    ``full`` loads every MetaGraph with both loaders (see ``export_core.steps.verify``).
    ``public_key`` (a PEM file's path, PEM text, or a ``cryptography`` Ed25519 public key)
    also requires the version to be signed by its private key, for this version number
    (``artifacts.signing``).

    Raises:
        ExportValidationError: ``public_key`` is not an Ed25519 public key.
        VerificationError: Files differ from the manifest, a MetaGraph does not load,
            predictions differ from ``model``, or the signature is missing or wrong.
    """
    key = signing.load_public_key(public_key) if public_key is not None else None
    require_folder(path, storage_options)
    with storage.local_copy(path, storage_options, progress) as local:
        require_saved_model(local, path)
        signed = None
        if key is not None:  # the signature, then every file's bytes: before TensorFlow loads
            where, number = path, signing.folder_version(path)
            signed = check_signed_folder(LocalFileSystem(), local, where, number, key)
        from export_core.artifacts import manifest as mf  # TensorFlow: only now
        from export_core.artifacts.saved_model import describe_saved_model
        from export_core.steps.verify import inputs_from_saved_model, verify_reload

        manifest_path = os.path.join(local, c.MANIFEST)
        manifest = None
        if os.path.exists(manifest_path):
            with open(manifest_path, encoding="utf-8") as handle:
                manifest = mf.Manifest.from_dict(json.load(handle))
            if signed is None:  # else already checked against the signed manifest
                mf.check_files(local, manifest)
        try:
            description = describe_saved_model(local)
        except ExportValidationError as exc:  # a corrupt proto: what verify is there to find
            raise VerificationError(str(exc)) from exc
        modes = tuple(
            m for m in c.MODES if any(c.TAGS[m][0] in g["tags"] for g in description["meta_graphs"])
        )
        if c.SERVE not in modes:
            raise VerificationError(f"{path} has no '{c.SERVE}' MetaGraph.")
        inputs = inputs_from_saved_model(local)
        if model is not None:
            inputs = _model_inputs_for(model, inputs, path)
        parity = verify_reload(local, model, inputs, modes, full=full)
        golden = os.path.exists(os.path.join(local, c.GOLDEN))
    reference = "model" if model is not None else "golden.npz" if golden else "tf1 loader"
    return {
        "path": path,
        "manifest_checked": manifest is not None,
        "files": len(manifest.files) if manifest else None,
        "modes": list(modes),
        "parity": parity.to_dict(),
        "compared_with": reference,
        "signature": signed,
    }
