"""Credentials the Prefect way: blocks in, fsspec ``storage_options`` only where storage is touched.

A flow takes ``credentials=`` (the destination) and ``source_credentials=`` (a model
or sample file in a bucket) as a block object or a saved block's name,
``"<block-type-slug>/<block-name>"``. What travels between the flow and its tasks
is a ``StorageAccess``: the block's *reference* (its name, or for an unsaved block
object a token of this process) plus the explicit options. The tasks that touch
storage call ``StorageAccess.storage_options()``, which loads the block and maps it
to the backend's options; nothing else ever holds the secret. Its ``repr`` and
``public()`` hide every secret-looking value, and the flows record block
parameters by name and explicit secrets redacted (see ``record_parameters``).

Supported blocks (prefect-aws / prefect-gcp are imported only when such a block
is used): ``AwsCredentials`` (keys, session token, profile, region,
``aws_client_parameters.endpoint_url``), ``MinIOCredentials``, ``GcpCredentials``
(service-account info or file, project), and Prefect's ``Secret`` holding a JSON
dict of fsspec options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keras_export.blocks import block_options, block_reference, load_block

REDACTED = "***redacted***"
SECRET_WORDS = ("secret", "password", "passwd", "token", "credential", "private", "signature")
SECRET_KEYS = {"key", "aws_access_key_id", "access_key", "account_key", "sas_token"}


def is_secret_key(name: str) -> bool:
    """Whether an option's name looks like it holds a credential."""
    lowered = str(name).lower()
    return lowered in SECRET_KEYS or any(word in lowered for word in SECRET_WORDS)


def redact(options: Any) -> Any:
    """``options`` with every secret-looking value (at any depth) replaced."""
    if isinstance(options, Mapping):
        return {
            k: REDACTED if is_secret_key(k) and v is not None else redact(v)
            for k, v in options.items()
        }
    if isinstance(options, list | tuple):
        return [redact(v) for v in options]
    return options


@dataclass(frozen=True)
class StorageAccess:
    """How a task reaches a store: a block reference and the caller's explicit options.

    Only ``storage_options()`` returns real secrets; ``repr`` and ``public()`` do not.
    """

    credentials: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def storage_options(self) -> dict[str, Any]:
        """The block's options with the explicit ones merged over them (secrets real)."""
        merged = block_options(load_block(self.credentials)) if self.credentials else {}
        merged.update(dict(self.options))
        return merged

    def public(self) -> dict[str, Any]:
        """What may be shown or recorded: explicit options redacted, the block by name."""
        shown = redact(dict(self.options))
        if self.credentials:
            shown["credentials"] = self.describe()
        return shown

    def describe(self) -> str:
        """The block's name for messages (an unsaved block: its type)."""
        if not self.credentials:
            return "ambient credentials"
        if self.credentials.startswith("unsaved:"):
            return f"an unsaved {self.credentials.split(':')[1]} block"
        return f"block '{self.credentials}'"

    def __repr__(self) -> str:
        return f"StorageAccess({self.public()!r})"


def storage_access(credentials: Any, storage_options: Mapping[str, Any] | None) -> StorageAccess:
    return StorageAccess(block_reference(credentials), dict(storage_options or {}))


def record_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """A flow's parameters as Prefect may store them: blocks by name, secrets redacted
    (a signing key too)."""
    recorded = dict(parameters)
    for name in ("credentials", "source_credentials"):
        value = recorded.get(name)
        if value is not None and not isinstance(value, str):
            saved = getattr(value, "_block_document_name", None)
            slug = (
                type(value).get_block_type_slug() if hasattr(value, "get_block_type_slug") else ""
            )
            recorded[name] = f"{slug}/{saved}" if saved else f"<unsaved {type(value).__name__}>"
    if isinstance(recorded.get("storage_options"), Mapping):
        recorded["storage_options"] = redact(recorded["storage_options"])
    if "signing_key" in recorded:  # a Secret block's name or a file's path, never a key
        from keras_export.signing_key import recorded as recorded_key

        recorded["signing_key"] = recorded_key(recorded["signing_key"])
    if isinstance(recorded.get("exports"), list):
        recorded["exports"] = [
            record_parameters(e) if isinstance(e, dict) else e for e in recorded["exports"]
        ]
    return recorded


SECRET_WARNING = (
    "storage_options holds secret-looking keys (%s); they were redacted from what this flow "
    "run records, and the export uses them as given. Keep credentials in a Prefect block "
    "instead (credentials='aws-credentials/<name>', 'gcp-credentials/<name>', "
    "'minio-credentials/<name>' or a Secret of options): see README, 'Credentials'."
)


def secret_keys(options: Any, prefix: str = "") -> list[str]:
    """Dotted names of the secret-looking keys in ``options``."""
    found: list[str] = []
    if isinstance(options, Mapping):
        for key, value in options.items():
            name = f"{prefix}{key}"
            if is_secret_key(key) and value is not None:
                found.append(name)
            else:
                found.extend(secret_keys(value, f"{name}."))
    return found
