"""Signed versions: an Ed25519 signature over the manifest, bound to the version number.

The manifest already holds every file's sha256, so signing its bytes signs the whole
version, as sigstore's model signing signs a list of file digests. The signature
(``export_manifest.sig``, JSON) covers ``sha256(manifest bytes)`` *and* the version
number the folder is published under: a version copied under another number, or a
manifest taken from another version, does not verify. A version is signed once its
number is known (``storage.publish`` claims it, then calls the sealer) and the
signature lands before ``saved_model.pb`` and the manifest, so the manifest stays the
last file of a publish and a complete version is never unsigned.

Keys are plain PEM files (``openssl genpkey -algorithm ed25519``) or OpenSSH keys; the
Prefect layer also loads them from a ``Secret`` block. Needs only ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from export_core import constants as c
from export_core.errors import ExportValidationError, VerificationError
from export_core.storage.names import version_number

SIGNATURE = c.SIGNATURE
FORMAT = "keras-export-signature/1"
ALGORITHM = "ed25519"
GENERATE = (
    "Generate one with: openssl genpkey -algorithm ed25519 -out signing.pem; its public key "
    "with: openssl pkey -in signing.pem -pubout -out signing.pub"
)


def _key_bytes(key: Any, what: str) -> tuple[bytes, str]:
    """The bytes of a key given as PEM/OpenSSH text, raw bytes or a file path, and how to
    name it in messages (the file, never the key's content)."""
    if isinstance(key, bytes | bytearray):
        return bytes(key), f"the {what} given"
    text = os.fspath(key) if isinstance(key, str | os.PathLike) else None
    if text is None:
        raise ExportValidationError(
            f"A {what} is a key file path, PEM text or a cryptography Ed25519 key, received "
            f"{type(key).__name__}. {GENERATE}."
        )
    if text.lstrip().startswith(("-----BEGIN", "ssh-")):
        return text.encode(), f"the {what} given"
    try:
        with open(text, "rb") as handle:
            return handle.read(), f"{what} file '{text}'"
    except OSError as exc:
        raise ExportValidationError(
            f"Cannot read {what} file '{text}': {exc.strerror or exc}. Pass the path of a PEM "
            f"file. {GENERATE}."
        ) from None


def load_private_key(key: Any, name: str | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from a key object, PEM (PKCS#8) or OpenSSH text, or a file.

    ``name`` says where the key's text came from in messages (e.g. a Secret block's
    name); such text is never taken for a path.

    Raises:
        ExportValidationError: Not readable, not a private key, encrypted, or not Ed25519;
            the message names the file, never the key.
    """
    if isinstance(key, Ed25519PrivateKey):
        return key
    if name is not None and isinstance(key, str):  # a secret's text: never a path
        key = key.encode()
    data, where = _key_bytes(key, "signing key")
    where = name or where
    loader = (
        serialization.load_ssh_private_key
        if b"OPENSSH PRIVATE KEY" in data
        else serialization.load_pem_private_key
    )
    try:
        loaded = loader(data, password=None)
    except TypeError:
        raise ExportValidationError(
            f"{where} is encrypted. Decrypt it (openssl pkey -in KEY -out signing.pem) and keep "
            "it in a Prefect Secret block or a file only the exporter can read."
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        message = f"{where} is not a PEM or OpenSSH private key. {GENERATE}."
        raise ExportValidationError(message) from None
    return _ed25519(loaded, Ed25519PrivateKey, where)


def load_public_key(key: Any) -> Ed25519PublicKey:
    """An Ed25519 public key from a key object, PEM, an ``ssh-ed25519`` line, the 32 raw
    bytes, or a file holding one of them.

    Raises:
        ExportValidationError: Not readable, a private key, or not an Ed25519 public key.
    """
    if isinstance(key, Ed25519PublicKey):
        return key
    data, where = _key_bytes(key, "public key")
    if b"PRIVATE KEY" in data:
        raise ExportValidationError(
            f"{where} is a private key; pass its public key instead (openssl pkey -in "
            "signing.pem -pubout -out signing.pub) and keep the private key with the exporter."
        )
    try:
        if len(data) == 32:
            loaded: Any = Ed25519PublicKey.from_public_bytes(data)
        elif data.lstrip().startswith(b"ssh-"):
            loaded = serialization.load_ssh_public_key(data.strip())
        else:
            loaded = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        message = f"{where} is not a PEM or OpenSSH public key. {GENERATE}."
        raise ExportValidationError(message) from None
    return _ed25519(loaded, Ed25519PublicKey, where)


def _ed25519(loaded: Any, kind: type, where: str) -> Any:
    if not isinstance(loaded, kind):
        name = type(loaded).__name__.lstrip("_")
        raise ExportValidationError(f"{where} is a {name}, not an Ed25519 key. {GENERATE}.")
    return loaded


def fingerprint(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """``sha256:<hex>`` of the raw public key: names a key without revealing anything."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


def folder_version(path: str) -> int | None:
    """The version a folder's name stands for (its last path component), or None."""
    return version_number(str(path).rstrip("/").replace("\\", "/").rsplit("/", 1)[-1])


def _message(manifest_sha256: str, version: int | None) -> bytes:
    """What is signed: the format, the manifest's digest and the version, one per line."""
    return f"{FORMAT}\nmanifest-sha256:{manifest_sha256}\nversion:{version}\n".encode()


def sign_manifest(manifest: bytes, version: int | None, key: Ed25519PrivateKey) -> bytes:
    """The signature file's content for ``manifest`` (its exact bytes) as ``version``."""
    digest = hashlib.sha256(manifest).hexdigest()
    record = {
        "format": FORMAT,
        "algorithm": ALGORITHM,
        "key_fingerprint": fingerprint(key),
        "manifest": c.MANIFEST,
        "manifest_sha256": digest,
        "version": version,
        "signature": base64.b64encode(key.sign(_message(digest, version))).decode(),
    }
    return json.dumps(record, indent=2, sort_keys=True).encode() + b"\n"


def write_signature(folder: str, version: int | None, key: Ed25519PrivateKey) -> str:
    """Signs ``folder``'s manifest as ``version``, into ``folder/export_manifest.sig``."""
    with open(os.path.join(folder, c.MANIFEST), "rb") as handle:
        signed = sign_manifest(handle.read(), version, key)
    with open(os.path.join(folder, SIGNATURE), "wb") as handle:
        handle.write(signed)
    return SIGNATURE


def check_signature(
    manifest: bytes, signature: bytes | None, version: int | None, key: Ed25519PublicKey, where: str
) -> dict[str, Any]:
    """Checks that ``key`` signed exactly these manifest bytes for this version.

    ``version`` is the number of the folder the manifest sits in (None: a folder not
    named as a version, such as a download, which TF Serving would not load: any signed
    number is accepted). Returns what was signed. The caller checks the files against
    the manifest (``registry.signed``, ``manifest.check_files``).

    Raises:
        VerificationError: Unsigned, signed by another key, a manifest that is not the
            signed one, or a version published under another number.
    """
    if signature is None:
        raise _unsigned(manifest, where)
    record, raw = _read_record(signature, where)
    expected = fingerprint(key)
    if record.get("key_fingerprint") != expected:
        raise VerificationError(
            f"{where} was signed by key {record.get('key_fingerprint')}, not by the public key "
            f"given ({expected}). Pass the public key of the exporter's signing key."
        )
    digest, signed_version = hashlib.sha256(manifest).hexdigest(), record["version"]
    if digest != record["manifest_sha256"]:
        raise VerificationError(
            f"{c.MANIFEST} in {where} is not the manifest that was signed (sha256 {digest}, "
            f"signed {record['manifest_sha256']}): it was replaced or edited. Do not serve "
            "this version."
        )
    try:
        key.verify(raw, _message(digest, signed_version))
    except InvalidSignature:
        raise VerificationError(
            f"The signature of {where} does not verify with key {expected}: {SIGNATURE} was "
            "altered. Do not serve this version."
        ) from None
    if version is not None and signed_version != version:
        signed_as = "without a version number"
        if signed_version is not None:
            signed_as = f"as version {signed_version}"
        raise VerificationError(
            f"{where} was signed {signed_as}, but sits in folder {version}: a version copied "
            "under another number. Serve the version under the number it was published as."
        )
    return {"key_fingerprint": expected, "version": signed_version}


def _unsigned(manifest: bytes, where: str) -> VerificationError:
    try:
        signed_by = json.loads(manifest).get("signed_by")
    except (ValueError, AttributeError):
        signed_by = None
    why = f"its manifest names key {signed_by} but " if signed_by else ""
    return VerificationError(
        f"{where} is not signed: {why}it holds no {SIGNATURE}. Publish it again from an "
        "export with a signing key (--signing-key), or check it without --public-key."
    )


def _read_record(signature: bytes, where: str) -> tuple[Mapping[str, Any], bytes]:
    """The signature file's fields and the raw signature."""
    try:
        record = json.loads(signature)
        if record["algorithm"] != ALGORITHM or not isinstance(record["manifest_sha256"], str):
            raise ValueError(record["algorithm"])
        record["version"]  # noqa: B018 - must be there, null or a number
        return record, base64.b64decode(record["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise VerificationError(
            f"{SIGNATURE} in {where} is not a keras-export Ed25519 signature. Re-export the "
            "version with a signing key."
        ) from None
