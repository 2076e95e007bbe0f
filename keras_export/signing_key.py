"""The key that signs exported versions, the Prefect way: a ``Secret`` block, or a key file.

``signing_key="secret/model-signing-key"`` names a saved Prefect ``Secret`` holding the
PEM text of an Ed25519 private key; anything else is a key file's path (or, in process,
PEM text, a ``Secret`` object or a ``cryptography`` key). The block is loaded when the
export starts (a missing or malformed key fails before any work) and again by the
publish step, which signs: as with credentials blocks, nothing else holds the key, and
the flow run records the block's name or the file's path, never the key
(``recorded``). The signing itself is ``export_core.artifacts.signing``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from export_core.artifacts.signing import load_private_key
from export_core.errors import ExportValidationError
from keras_export.blocks import check_blocks_exist, load_block

SECRET_SLUG = "secret"


def is_block_name(value: Any) -> bool:
    """``secret/<name>``, and no file of that path (a file of that name wins)."""
    if not isinstance(value, str) or not value.startswith(f"{SECRET_SLUG}/"):
        return False
    return value.count("/") == 1 and len(value) > len(SECRET_SLUG) + 1 and not os.path.exists(value)


def check_signing_key(value: Any) -> None:
    """The CLI's fast check, without Prefect: a key file is loaded; a block must exist on
    the configured API (see ``blocks.check_blocks_exist``).

    Raises:
        ExportValidationError: An unreadable or malformed key file, or no such block.
    """
    if is_block_name(value):
        check_blocks_exist(value)
    else:
        load_private_key(value)


def signing_key_source(value: Any) -> Callable[[], Any] | None:
    """What the export's request holds: a call giving the key (None: unsigned).

    The key is loaded once now, so a bad one fails before any work.

    Raises:
        ExportValidationError: No such block, or not an unencrypted Ed25519 private key.
    """
    if value is None or value == "":
        return None
    if is_block_name(value):
        load_secret_key(value)
        return lambda: load_secret_key(value)
    if type(value).__name__ == "Secret" and hasattr(value, "get"):
        key = load_private_key(_secret_text(value, "the Secret block given"), "the Secret given")
    else:
        key = load_private_key(value)
    return lambda: key


def load_secret_key(reference: str) -> Any:
    """The private key held by the saved ``Secret`` block ``reference`` (``secret/NAME``)."""
    where = f"Secret block '{reference}'"
    try:
        block = load_block(reference)
    except ExportValidationError as exc:
        name = reference.split("/", 1)[1]
        raise ExportValidationError(
            f"Cannot load the signing key's {where}: {exc} Save it with "
            f"Secret(value=open('signing.pem').read()).save('{name}'), or pass a key file."
        ) from None
    return load_private_key(_secret_text(block, where), where)


def _secret_text(block: Any, where: str) -> str:
    value = block.get()
    if not isinstance(value, str | bytes):
        raise ExportValidationError(
            f"{where} must hold the PEM text of an Ed25519 private key, not a "
            f"{type(value).__name__}. Save it with Secret(value=open('signing.pem').read())."
        )
    return value


def recorded(value: Any) -> Any:
    """What a flow run may record of ``signing_key``: a block's name or a file's path,
    never key material."""
    if value is None or is_block_name(value):
        return value
    if isinstance(value, str) and "PRIVATE KEY" not in value:
        return value  # a path
    return "<signing key, not recorded>"
