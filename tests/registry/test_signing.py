"""Signed versions: an Ed25519 signature over the manifest, bound to the version number.

Real parts throughout: small Keras models exported through the API, the flow and the
CLI; every backend of conftest.py (local disk, fsspec memory, the S3 server, the GCS
emulator); a Prefect test API holding the signing key in a ``Secret`` block. Keys are
made fresh for this module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import export_core
from export_core.artifacts import signing
from export_core.errors import ExportValidationError, VerificationError
from export_core.registry.signed import require_signed
from export_core.reverify import verify_saved_model
from tests import models
from tests.helpers import CLI, names

SIG = "export_manifest.sig"
SHARD = "variables/variables.data-00000-of-00001"


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )


def pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """The signing key (a PEM file), its public key, another key's, and a malformed file."""
    root = tmp_path_factory.mktemp("keys")
    private, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    files = {
        "pem": pem(private),
        "pub": public_pem(private),
        "other_pub": public_pem(other),
        "bad": b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    paths = {name: str(root / name) for name in files}
    return SimpleNamespace(private=private, fingerprint=signing.fingerprint(private), **paths)


def export(base, signing_key=None, **options):
    """A small serving-only export (verification has its own tests): about a second."""
    return export_core.run_export(
        models.functional_regressor(),
        str(base),
        serving_only=True,
        verify=False,
        signing_key=signing_key,
        **options,
    )


@pytest.fixture(scope="module")
def registry(keys, tmp_path_factory):
    """A local base holding, oldest first: signed, unsigned, signed (by a key object)."""
    base = tmp_path_factory.mktemp("signed") / "registry"
    old = export(base, keys.pem).version
    unsigned = export(base).version
    new = export(base, keys.private).version
    return SimpleNamespace(base=str(base), old=old, unsigned=unsigned, new=new)


def copy_version(registry, version: int, into: Path, number: int | None = None) -> Path:
    """The version copied into a base of its own, under its number (or ``number``)."""
    target = into / str(version if number is None else number)
    shutil.copytree(Path(registry.base) / str(version), target)
    return target


# GCS publishes through the staging route memory:// takes too; an export there costs 15 s
# more here (gcsfs looks for Google credentials when the build folder's destination is
# parsed without options), so it is left to the storage tests.
@pytest.mark.parametrize("backend", ["local", "memory", "s3"], indirect=True)
def test_signed_export_verifies_on_every_route(backend, keys):
    """S3 publishes through pending multipart uploads, memory through a staging prefix,
    local disk by a rename: the signature lands with the version on each."""
    result = export(backend.base, keys.pem, storage_options=backend.options)
    folder = f"{backend.path}/{result.version}"
    assert {SIG, "export_manifest.json", "saved_model.pb"} <= set(names(backend.fs, folder))
    record = json.loads(backend.fs.cat_file(f"{folder}/{SIG}"))
    assert (record["version"], record["key_fingerprint"]) == (result.version, keys.fingerprint)
    assert result.manifest.extra["signed_by"] == keys.fingerprint
    assert SIG not in result.manifest.files, "the manifest cannot list its own signature"

    checked = require_signed(backend.base, [result.version], keys.pub, backend.options)
    assert checked == [{"version": result.version, "key_fingerprint": keys.fingerprint}]
    uri = f"{backend.base}/{result.version}"
    verified = verify_saved_model(uri, storage_options=backend.options, public_key=keys.pub)
    assert verified["signature"]["key_fingerprint"] == keys.fingerprint
    plain = verify_saved_model(uri, storage_options=backend.options)
    assert plain["manifest_checked"] and plain["signature"] is None, "no key: files only"
    with pytest.raises(VerificationError, match="not by the public key given"):
        require_signed(backend.base, [result.version], keys.other_pub, backend.options)


@pytest.mark.parametrize("where", ["local", "memory"])
def test_a_version_without_timestamp_is_bound_to_its_folder_number(where, keys, tmp_path):
    import fsspec

    base = str(tmp_path / "registry") if where == "local" else f"memory://{tmp_path.name}/reg"
    fs, path = fsspec.core.url_to_fs(base)
    result = export(f"{base}/7", keys.private, timestamped=False)
    assert json.loads(fs.cat_file(f"{path}/7/{SIG}"))["version"] == 7
    assert require_signed(base, [7], keys.pub)[0]["version"] == 7
    fs.copy(f"{path}/7", f"{path}/8", recursive=True)
    with pytest.raises(VerificationError, match="signed as version 7, but sits in folder 8"):
        require_signed(base, [8], keys.pub)
    named = export(f"{base}/final", keys.private, timestamped=False)
    assert result.version is named.version is None
    assert json.loads(fs.cat_file(f"{path}/final/{SIG}"))["version"] is None
    fs.copy(f"{path}/final", f"{path}/9", recursive=True)
    with pytest.raises(VerificationError, match="signed without a version number"):
        require_signed(base, [9], keys.pub)


def test_cli_exports_signed_and_verify_accepts_the_right_key_only(registry, keys, tmp_path):
    models.functional_regressor().save(tmp_path / "model.keras")
    home = {"PREFECT_HOME": str(tmp_path / "prefect-home")}
    args = ("--json", "export", str(tmp_path / "model.keras"), str(tmp_path / "registry"))
    done = run(*args, "--serving-only", "--signing-key", keys.pem, **home)
    assert done.returncode == 0, done.stderr
    signed = json.loads(done.stdout)["path"]
    ok = run("verify", signed, "--public-key", keys.pub)
    assert ok.returncode == 0, ok.stderr
    assert f"signed by {keys.fingerprint}" in ok.stdout
    wrong = run("verify", signed, "--public-key", keys.other_pub)
    assert wrong.returncode == 4, wrong.stderr
    assert "not by the public key given" in wrong.stderr
    unsigned = run("verify", f"{registry.base}/{registry.unsigned}", "--public-key", keys.pub)
    assert unsigned.returncode == 4 and "is not signed" in unsigned.stderr, unsigned.stderr


def test_cli_verify_fails_with_exit_4_on_every_tampering(registry, keys, tmp_path):
    """Each copy sits in a base of its own under the version's own number."""
    cases = {}
    changed = copy_version(registry, registry.new, tmp_path / "byte")
    data = bytearray((changed / SHARD).read_bytes())
    data[len(data) // 2] ^= 1
    (changed / SHARD).write_bytes(bytes(data))
    cases["differs from its signed manifest"] = changed

    swapped = copy_version(registry, registry.new, tmp_path / "manifest")
    other = Path(registry.base) / str(registry.old)
    shutil.copy(other / "export_manifest.json", swapped / "export_manifest.json")
    cases["is not the manifest that was signed"] = swapped

    both = copy_version(registry, registry.new, tmp_path / "both")
    for name in ("export_manifest.json", SIG):
        shutil.copy(other / name, both / name)
    cases[f"signed as version {registry.old}, but sits in folder {registry.new}"] = both

    missing = copy_version(registry, registry.new, tmp_path / "missing")
    (missing / SIG).unlink()
    cases[f"its manifest names key {keys.fingerprint} but it holds no {SIG}"] = missing

    moved = copy_version(registry, registry.new, tmp_path / "moved", registry.new + 1)
    cases[f"signed as version {registry.new}, but sits in folder {registry.new + 1}"] = moved

    forged = copy_version(registry, registry.new, tmp_path / "forged")
    record = json.loads((forged / SIG).read_text())
    record["version"] = registry.new + 1  # what an edited signature file would claim
    (forged / SIG).write_text(json.dumps(record))
    cases["does not verify with key"] = forged

    for message, folder in cases.items():
        done = run("verify", str(folder), "--public-key", keys.pub)
        assert done.returncode == 4, (message, done.stderr)
        assert message in done.stderr, done.stderr


def test_promote_and_serving_config_require_signed_versions(registry, keys, tmp_path, tripwire):
    """Refusals change nothing; no command here imports TensorFlow or Prefect."""
    labels_file = Path(registry.base) / "labels.json"
    before = labels_file.read_bytes() if labels_file.exists() else None
    signed_only = ("--require-signed", "--public-key", keys.pub)

    def promote(base, version, *extra):
        args = ("promote", base, str(version), "--label", "stable", *extra)
        return run(*args, PYTHONPATH=tripwire)

    refused = promote(registry.base, registry.unsigned, *signed_only)
    assert refused.returncode == 4 and "is not signed" in refused.stderr, refused.stderr
    wrong = promote(registry.base, registry.new, "--require-signed", "--public-key", keys.other_pub)
    assert wrong.returncode == 4 and "not by the public key given" in wrong.stderr
    no_key = promote(registry.base, registry.new, "--require-signed")
    assert no_key.returncode == 2 and "--require-signed needs --public-key" in no_key.stderr
    tampered_base = tmp_path / "tampered"
    tampered = copy_version(registry, registry.new, tampered_base)
    (tampered / "assets" / "saved_model.json").write_text("{}")
    changed = promote(str(tampered_base), registry.new, *signed_only)
    assert changed.returncode == 4 and "differs from its signed manifest" in changed.stderr
    assert not (tampered_base / "labels.json").exists()
    after = labels_file.read_bytes() if labels_file.exists() else None
    assert after == before, "a refused promote changes no label"

    done = promote(registry.base, registry.old, *signed_only)
    assert done.returncode == 0, done.stderr
    assert json.loads(labels_file.read_text())["labels"]["stable"] == registry.old

    config = run("serving-config", registry.base, "--latest", "1", *signed_only)
    assert config.returncode == 0, config.stderr
    assert f"versions: {registry.old}" in config.stdout
    assert f"versions: {registry.new}" in config.stdout
    with_unsigned = run("serving-config", registry.base, "--latest", "2", *signed_only)
    assert with_unsigned.returncode == 4 and with_unsigned.stdout == ""
    assert f"/{registry.unsigned} is not signed" in with_unsigned.stderr
    assert "tripwire" not in done.stderr + config.stderr


def test_a_malformed_key_is_invalid_input_and_nothing_is_written(keys, tmp_path):
    model_file = tmp_path / "model.keras"
    models.functional_regressor().save(model_file)
    dest = tmp_path / "registry"
    bad = run("export", str(model_file), str(dest), "--signing-key", keys.bad)
    assert bad.returncode == 2, bad.stderr
    assert f"signing key file '{keys.bad}' is not a PEM or OpenSSH private key" in bad.stderr
    gone = run("export", str(model_file), str(dest), "--signing-key", str(tmp_path / "no.pem"))
    assert gone.returncode == 2 and "Cannot read signing key file" in gone.stderr
    with pytest.raises(ExportValidationError, match="is not a PEM or OpenSSH private key"):
        export(dest, keys.bad)
    assert not dest.exists(), "nothing written"

    public = run("verify", str(tmp_path), "--public-key", keys.pem)
    assert public.returncode == 2 and "is a private key; pass its public key" in public.stderr
    with pytest.raises(ExportValidationError, match="RSAPrivateKey, not an Ed25519 key"):
        signing.load_private_key(pem(rsa.generate_private_key(65537, 2048)))
    encrypted = keys.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    )
    with pytest.raises(ExportValidationError, match="is encrypted"):
        signing.load_private_key(encrypted)


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed")
def test_keys_made_as_the_readme_says_sign_and_verify(tmp_path):
    private, public = str(tmp_path / "signing.pem"), str(tmp_path / "signing.pub")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", private], check=True)
    subprocess.run(["openssl", "pkey", "-in", private, "-pubout", "-out", public], check=True)
    record = signing.sign_manifest(b"{}", 5, signing.load_private_key(private))
    key = signing.load_public_key(public)
    assert signing.check_signature(b"{}", record, 5, key, "x")["version"] == 5


def test_flow_signs_with_a_prefect_secret_block(prefect_api, keys, tmp_path):
    from prefect.blocks.system import Secret

    from keras_export.credentials import record_parameters
    from keras_export.flows import export_keras_model
    from keras_export.flows.promote import promote_version
    from keras_export.signing_key import signing_key_source
    from tests.prefect.test_credentials import everything_prefect_stored

    key_text = Path(keys.pem).read_text()
    Secret(value=key_text).save("model-signing-key", overwrite=True)
    models.functional_regressor().save(tmp_path / "model.keras")
    base = str(tmp_path / "registry")
    state = export_keras_model(
        model=str(tmp_path / "model.keras"),
        destination=base,
        serving_only=True,
        signing_key="secret/model-signing-key",
        return_state=True,
    )
    result = state.result()
    assert require_signed(base, [result["version"]], keys.pub)[0]["version"] == result["version"]
    stored = everything_prefect_stored(state.state_details.flow_run_id)
    assert "secret/model-signing-key" in stored
    assert key_text.splitlines()[1] not in stored, "the key is nowhere in what Prefect keeps"
    assert (
        record_parameters({"signing_key": key_text})["signing_key"] == "<signing key, not recorded>"
    )
    in_process = signing_key_source(Secret(value=key_text))()
    assert signing.fingerprint(in_process) == keys.fingerprint

    Secret(value="not a key").save("broken-signing-key", overwrite=True)
    with pytest.raises(ExportValidationError, match="Secret block 'secret/broken-signing-key'"):
        export_keras_model(
            model=str(tmp_path / "model.keras"),
            destination=str(tmp_path / "never"),
            signing_key="secret/broken-signing-key",
        )
    assert not (tmp_path / "never").exists()

    unsigned = export(base).version
    with pytest.raises(VerificationError, match="is not signed"):
        promote_version(
            base=base, version=unsigned, require_signed=True, public_key=Path(keys.pub).read_text()
        )
    assert not (tmp_path / "registry" / "labels.json").exists()
