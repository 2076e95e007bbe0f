"""Prefect credentials blocks: loading one by name, and the fsspec options it stands for.

``AwsCredentials`` (keys, session token, profile, region,
``aws_client_parameters.endpoint_url``) and ``MinIOCredentials`` from prefect-aws,
``GcpCredentials`` (service-account info or file, project) from prefect-gcp, and
Prefect's ``Secret`` holding a JSON dict of fsspec options. prefect-aws and prefect-gcp
are imported only when such a block is used; whether a named block exists can be asked
without importing Prefect at all (``check_blocks_exist``, for the CLI's fast checks).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

from export_core.errors import ExportValidationError

_UNSAVED: dict[str, Any] = {}  # token -> block object given in process, never saved


ACCEPTED = (
    "an AwsCredentials or MinIOCredentials block (prefect-aws), a GcpCredentials block "
    "(prefect-gcp), a Secret block holding a JSON dict of fsspec storage options, or the "
    "saved name of one of them as '<block-type-slug>/<block-name>', e.g. "
    "'aws-credentials/registry-writer'"
)


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
    """``PREFECT_API_URL`` as Prefect reads it; None when Prefect would start a temporary API."""
    return _prefect_setting("PREFECT_API_URL")


def _api_key() -> str | None:
    return _prefect_setting("PREFECT_API_KEY")


def _prefect_setting(name: str) -> str | None:
    """A Prefect setting from the environment, else from the active profile
    (``profiles.toml`` in ``PREFECT_HOME``), without importing Prefect."""
    value = os.environ.get(name)
    if value:
        return value
    profile = _active_profile()
    found = profile.get(name) if profile else None
    return str(found) if found else None


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
    if kind in ("AwsCredentials", "MinIOCredentials"):
        aws = kind == "AwsCredentials"  # prefect-aws names MinIO's keys its own way
        return _aws_options(
            block.aws_access_key_id if aws else block.minio_root_user,
            block.aws_secret_access_key if aws else block.minio_root_password,
            block.region_name,
            block.aws_client_parameters,
            token=block.aws_session_token if aws else None,
            profile=block.profile_name if aws else None,
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
