"""TensorFlow Serving warm-up: ``assets.extra/tf_serving_warmup_requests``.

TF Serving replays the ``PredictionLog`` records of this TFRecord file when it
loads a version, before the version serves, so the first real requests do not pay
for graph initialization. The requests are built from the version's golden inputs
(``golden.npz``) through ``tensorflow_serving.apis``, and read back by
verify-reload, which checks that every record parses and matches the serving
signature (input names and dtypes).

``tensorflow_serving.apis`` comes from ``tensorflow-serving-api``, whose wheel
requires the full ``tensorflow`` distribution: install it with ``--no-deps`` next to
``tensorflow-cpu`` (its own needs, grpcio and protobuf, come with TensorFlow).
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from export_core import constants as c
from export_core.artifacts.golden import read_golden
from export_core.errors import EnvironmentSetupError, VerificationError, writing_into
from export_core.model.signature import InputSignature

WARMUP = "assets.extra/tf_serving_warmup_requests"


def _apis():
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    except ImportError as exc:
        raise EnvironmentSetupError(
            "TF Serving warm-up requests need tensorflow-serving-api: pip install --no-deps "
            "'tensorflow-serving-api>=2.19,<2.22' (--no-deps: its wheel requires the full "
            "tensorflow distribution, which would install over tensorflow-cpu)."
        ) from exc
    return predict_pb2, prediction_log_pb2


def write_warmup(build_dir: str, inputs: InputSignature) -> str:
    """Writes one warm-up request (the golden batch) for ``serving_default``."""
    predict_pb2, prediction_log_pb2 = _apis()
    golden = read_golden(build_dir)
    if golden is None:
        raise VerificationError("Warm-up requests are built from golden.npz, which is missing.")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    request.model_spec.signature_name = c.SIGNATURE_KEYS[c.SERVE]
    for info in inputs.tensors:
        value = golden.inputs[info.name]
        request.inputs[info.name].CopyFrom(tf.make_tensor_proto(value, tf.as_dtype(info.dtype)))
    record = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    path = os.path.join(build_dir, WARMUP)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with writing_into(build_dir), tf.io.TFRecordWriter(path) as writer:
        writer.write(record.SerializeToString())
    return WARMUP


def read_warmup(folder: str) -> list[Any]:
    """The ``PredictionLog`` records of a version's warm-up file ([] when it has none)."""
    path = os.path.join(folder, WARMUP)
    if not os.path.exists(path):
        return []
    _predict_pb2, prediction_log_pb2 = _apis()
    records = []
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(raw)
        records.append(log)
    return records


def check_warmup(folder: str, inputs: InputSignature) -> int:
    """Checks every warm-up record against the serving signature; returns how many.

    Raises:
        VerificationError: A record does not parse, is not a predict request for
            ``serving_default``, or its inputs' names or dtypes differ.
    """
    try:
        records = read_warmup(folder)
    except Exception as exc:  # noqa: BLE001 - a corrupt TFRecord raises TensorFlow's errors
        if isinstance(exc, EnvironmentSetupError):
            raise
        raise VerificationError(f"{WARMUP} does not parse as PredictionLog records: {exc}") from exc
    wanted = {t.name: tf.as_dtype(t.dtype).as_datatype_enum for t in inputs.tensors}
    for i, log in enumerate(records):
        request = log.predict_log.request
        got = {k: v.dtype for k, v in request.inputs.items()}
        if request.model_spec.signature_name != c.SIGNATURE_KEYS[c.SERVE] or got != wanted:
            raise VerificationError(
                f"{WARMUP} record {i} does not match the serving signature: inputs "
                f"{sorted(got)} for '{request.model_spec.signature_name}', expected "
                f"{sorted(wanted)} for '{c.SIGNATURE_KEYS[c.SERVE]}' with their dtypes."
            )
    return len(records)
