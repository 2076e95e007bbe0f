"""TF Serving's model config from bases and labels, and the registry commands' CLI glue.

The text is checked with TensorFlow Serving's own ``ModelServerConfig`` proto (from
``tensorflow-serving-api``, installed by ./dev.sh with --no-deps).
"""

from __future__ import annotations

import argparse
import json
import time

import pytest

from export_core.errors import ExportValidationError
from export_core.registry import labels
from export_core.registry.serving_config import serving_config
from keras_export.cli import registry_commands
from tests.conftest import Backend
from tests.helpers import make_versions, write_version


def parse(text: str):
    """TF Serving's own reading of the text (``--model_config_file``)."""
    from google.protobuf import text_format

    config_pb2 = pytest.importorskip(
        "tensorflow_serving.config.model_server_config_pb2",
        reason="tensorflow-serving-api is missing: ./dev.sh installs it (pip install --no-deps)",
    )
    return text_format.Parse(text, config_pb2.ModelServerConfig())


def versions_of(model) -> list[int]:
    return list(model.model_version_policy.specific.versions)


def test_config_serves_labelled_and_newest_versions_and_parses_as_tf_serving_config(backend):
    make_versions(backend, 3, 5, 8, 13, 21)
    write_version(backend.fs, backend.path, int(time.time()), manifest=False)  # publishing
    labels.set_label(backend.base, "stable", 5, backend.options)
    labels.set_label(backend.base, "canary", 21, backend.options)

    config = parse(serving_config([backend.base], backend.options, latest=2))
    (model,) = config.model_config_list.config
    assert model.name == "registry", "the base's last path component"
    expected_path = backend.path if backend.name == "local" else backend.base
    assert model.base_path == expected_path
    assert model.model_platform == "tensorflow"
    assert versions_of(model) == [5, 13, 21]
    assert dict(model.version_labels) == {"canary": 21, "stable": 5}

    only_labelled = parse(serving_config([backend.base], backend.options, latest=0))
    assert versions_of(only_labelled.model_config_list.config[0]) == [5, 21]


def test_config_of_several_bases_with_names(tmp_path):
    first = Backend("local", str(tmp_path / "a" / "model"), {})
    second = Backend("local", str(tmp_path / "b" / "model"), {})
    make_versions(first, 1, 2, 3)
    make_versions(second, 7)
    with pytest.raises(ExportValidationError, match=r"unique, \['model'\] repeat"):
        serving_config([first.base, second.base])
    text = serving_config([first.base, second.base], latest=1, names=["ranker", 'odd "name"'])
    models = parse(text).model_config_list.config
    assert [m.name for m in models] == ["ranker", 'odd "name"']
    assert [versions_of(m) for m in models] == [[3], [7]]
    assert [dict(m.version_labels) for m in models] == [{}, {}]
    assert text.startswith('model_config_list {\n  config {\n    name: "ranker"\n')


def test_config_refuses_bases_with_nothing_to_serve_or_a_label_on_a_removed_version(backend):
    with pytest.raises(ExportValidationError, match="no complete version to serve"):
        serving_config([backend.base], backend.options)
    make_versions(backend, 1, 2)
    labels.set_label(backend.base, "stable", 1, backend.options)
    backend.fs.rm(f"{backend.path}/1", recursive=True)
    with pytest.raises(
        ExportValidationError, match="'stable' .* points at version 1, which is not"
    ):
        serving_config([backend.base], backend.options)
    for bad in (-1, True, "2"):
        with pytest.raises(ExportValidationError, match="latest must be an integer"):
            serving_config([backend.base], backend.options, latest=bad)


def registry_parser() -> argparse.ArgumentParser:
    """The subcommands as ``keras_export/cli/parser.py``'s ``build_parser`` adds them."""
    parser = argparse.ArgumentParser(prog="keras-export")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, **kwargs):
        return sub.add_parser(name, **kwargs)

    registry_commands.add_commands(command)
    return parser


def run_cli(*argv: str, options=None):
    args = registry_parser().parse_args(argv)
    result = registry_commands.run(args, options)
    json.dumps(result)  # JSON-able, as --json prints it
    return result, registry_commands.render(args.command, result)


def test_registry_commands_run_and_render(tmp_path):
    base = str(tmp_path / "registry")
    make_versions(Backend("local", base, {}), 1, 2, 3)
    result, text = run_cli("label", base, "stable", "1")
    assert result["labels"] == {"stable": 1} and text == f"{base}: stable -> 1 (was unset)"
    _, text = run_cli("promote", base, "2", "--label", "stable")
    assert text == f"{base}: stable -> 2 (was 1)"
    result, text = run_cli("rollback", base, "--label", "stable")
    assert (result["version"], result["previous"]) == (1, 2)
    assert text == f"{base}: stable -> 1 (was 2)"
    result, text = run_cli("labels", base)
    assert result["labels"] == {"stable": 1} and len(result["history"]) == 3
    assert text.splitlines()[:2] == ["stable  1", "history (3 events, newest last):"]
    assert "rollback stable: 2 -> 1" in text.splitlines()[-1]
    result, text = run_cli("serving-config", base, "--latest", "1", "--name", "ranker")
    (model,) = parse(text).model_config_list.config
    assert (model.name, versions_of(model), dict(model.version_labels)) == (
        "ranker",
        [1, 3],
        {"stable": 1},
    )
    assert result["config"].rstrip("\n") == text
    assert registry_commands.render("versions", []) is None
    with pytest.raises(ExportValidationError, match="not a complete version"):
        run_cli("label", base, "stable", "9")
