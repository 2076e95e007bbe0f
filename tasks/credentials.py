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

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from export_core.errors import ExportValidationError

ACCEPTED = (
    "an AwsCredentials or MinIOCredentials block (prefect-aws), a GcpCredentials block "
    "(prefect-gcp), a Secret block holding a JSON dict of fsspec storage options, or the "
    "saved name of one of them as '<block-type-slug>/<block-name>', e.g. "
    "'aws-credentials/registry-writer'"
)
REDACTED = "***redacted***"
SECRET_WORDS = ("secret", "password", "passwd", "token", "credential", "private", "signature")
SECRET_KEYS = {"key", "aws_access_key_id", "access_key", "account_key", "sas_token"}
_UNSAVED: dict[str, Any] = {}  # token -> block object given in process, never saved


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


def block_reference(credentials: Any) -> str | None:
    """What a task is given for ``credentials``: a saved block's name or a process token.

    Raises:
        ExportValidationError: ``credentials`` is neither a supported block nor a
            ``"slug/name"`` string.
    """
    if credentials is None or credentials == "":
        return None
    if isinstance(credentials, str):
        if credentials.count("/") != 1 or not all(credentials.split("/")):
            raise ExportValidationError(
                f"credentials {credentials!r} is not a saved block's name; expected {ACCEPTED}."
            )
        return credentials
    block_options(credentials)  # refuses unsupported objects here, at the edge
    name = getattr(credentials, "_block_document_name", None)
    if name and not getattr(credentials, "_is_anonymous", False):
        return f"{type(credentials).get_block_type_slug()}/{name}"
    token = f"unsaved:{type(credentials).__name__}:{uuid.uuid4().hex}"
    _UNSAVED[token] = credentials
    return token


def load_block(reference: str) -> Any:
    """The block a reference names (loaded from the Prefect API when saved).

    Raises:
        ExportValidationError: No such block, or the block cannot be loaded here.
    """
    if reference.startswith("unsaved:"):
        block = _UNSAVED.get(reference)
        if block is None:
            raise ExportValidationError(
                f"The {reference.split(':')[1]} block object passed as credentials lives in "
                "another process; save it (block.save('name')) and pass "
                "'<block-type-slug>/<name>' so every worker can load it."
            )
        return block
    _import_block_types(reference.split("/", 1)[0])
    from prefect.blocks.core import Block

    try:
        return Block.load(reference)
    except (ValueError, KeyError) as exc:
        raise _missing_block(reference, f"{type(exc).__name__}: {_first_line(exc)}") from exc


def _missing_block(reference: str, why: str) -> ExportValidationError:
    return ExportValidationError(
        f"Cannot load credentials block '{reference}' from the Prefect API: {why}. Create "
        "it (see README, 'Credentials'), or check the name and PREFECT_API_URL."
    )


def check_blocks_exist(*references: str | None) -> None:
    """Fails at once when a named block is missing from the configured Prefect API.

    Asks the API over HTTP (``GET /block_types/slug/<slug>/block_documents/name/<name>``),
    without importing Prefect, so that the CLI refuses a misspelt block in a fraction of
    a second instead of after TensorFlow and Prefect have started. Nothing is checked
    when no API is configured (Prefect's temporary API starts later, and loading the
    block then reports it) or when the API does not answer (the load reports that too).

    Raises:
        ExportValidationError: A malformed reference, or no such block on the API.
    """
    import urllib.error
    import urllib.parse
    import urllib.request

    api = configured_api_url()
    for reference in references:
        if not reference:
            continue
        block_reference(reference)  # '<slug>/<name>'
        if api is None:
            continue
        slug, name = (urllib.parse.quote(part, safe="") for part in reference.split("/", 1))
        url = f"{api.rstrip('/')}/block_types/slug/{slug}/block_documents/name/{name}"
        headers = {"Authorization": f"Bearer {key}"} if (key := _api_key()) else {}
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5).close()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise _missing_block(reference, "no block of that type and name") from None
        except OSError:
            return


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` from the environment, else from the active Prefect profile
    (``profiles.toml`` in ``PREFECT_HOME``); None when Prefect would start a temporary API."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url
    profile = _active_profile()
    value = profile.get("PREFECT_API_URL") if profile else None
    return str(value) if value else None


def _api_key() -> str | None:
    key = os.environ.get("PREFECT_API_KEY")
    if key:
        return key
    profile = _active_profile()
    return str(profile["PREFECT_API_KEY"]) if profile and profile.get("PREFECT_API_KEY") else None


def _active_profile() -> dict[str, Any] | None:
    import tomllib

    home = os.path.expanduser(os.environ.get("PREFECT_HOME") or "~/.prefect")
    path = os.environ.get("PREFECT_PROFILES_PATH") or os.path.join(home, "profiles.toml")
    try:
        with open(os.path.expanduser(path), "rb") as handle:
            profiles = tomllib.load(handle)
    except (OSError, ValueError):
        return None
    name = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    found = (profiles.get("profiles") or {}).get(name) if name else None
    return found if isinstance(found, dict) else None


def _import_block_types(slug: str) -> None:
    """Registers the block classes of prefect-aws/prefect-gcp before ``Block.load``."""
    modules = {
        "aws-credentials": "prefect_aws",
        "minio-credentials": "prefect_aws",
        "gcp-credentials": "prefect_gcp",
    }
    module = modules.get(slug)
    if module is None:
        return
    try:
        __import__(module)
    except ImportError as exc:
        extra = "aws" if module == "prefect_aws" else "gcp"
        raise ExportValidationError(
            f"A '{slug}' block needs {module.replace('_', '-')}: pip install "
            f"'keras-savedmodel-export[{extra}]'."
        ) from exc


def block_options(block: Any) -> dict[str, Any]:
    """The fsspec storage options a credentials block stands for.

    Raises:
        ExportValidationError: Not a supported block type (the message lists them).
    """
    kind = type(block).__name__
    if kind == "AwsCredentials":
        return _aws_options(
            block.aws_access_key_id,
            block.aws_secret_access_key,
            block.region_name,
            block.aws_client_parameters,
            token=block.aws_session_token,
            profile=block.profile_name,
        )
    if kind == "MinIOCredentials":
        return _aws_options(
            block.minio_root_user,
            block.minio_root_password,
            block.region_name,
            block.aws_client_parameters,
        )
    if kind == "GcpCredentials":
        return _gcp_options(block)
    if kind == "Secret":
        return _secret_options(block)
    raise ExportValidationError(f"credentials of type {kind} are not supported; pass {ACCEPTED}.")


def _aws_options(key, secret, region, client_parameters, token=None, profile=None) -> dict:
    options: dict[str, Any] = {}
    if key:
        options["key"] = key
    if secret is not None:
        options["secret"] = _reveal(secret)
    if token:
        options["token"] = _reveal(token)
    if profile:
        options["profile"] = profile
    client_kwargs = {}
    if region:
        client_kwargs["region_name"] = region
    endpoint = getattr(client_parameters, "endpoint_url", None)
    if endpoint:
        options["endpoint_url"] = endpoint
    verify = getattr(client_parameters, "verify", None)
    if verify is not None and verify is not True:
        client_kwargs["verify"] = str(verify) if verify else False
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def _gcp_options(block: Any) -> dict:
    options: dict[str, Any] = {}
    if block.service_account_info is not None:
        options["token"] = dict(_reveal(block.service_account_info))
    elif block.service_account_file is not None:
        options["token"] = str(block.service_account_file)
    if block.project:
        options["project"] = block.project
    return options


def _secret_options(block: Any) -> dict:
    value = block.get()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, Mapping):
        raise ExportValidationError(
            "A Secret block used as credentials must hold a JSON object of fsspec storage "
            'options, e.g. {"token": "anon", "endpoint_url": "https://..."}; this one does not.'
        )
    return dict(value)


def _reveal(value: Any) -> Any:
    getter = getattr(value, "get_secret_value", None)
    return getter() if getter else value


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


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
    """A flow's parameters as Prefect may store them: blocks by name, secrets redacted."""
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
