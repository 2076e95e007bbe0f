"""Names fixed by the SavedModel format, TensorFlow Serving and the original API."""

from __future__ import annotations

SERVE = "serve"
TRAIN = "train"
EVAL = "eval"
MODES = (SERVE, TRAIN, EVAL)

# Tag set, signature key and method name per mode, as the r1.13/r1.14
# Keras exporter (and tf.estimator) wrote them.
TAGS = {SERVE: ("serve",), TRAIN: ("train",), EVAL: ("eval",)}
SIGNATURE_KEYS = {SERVE: "serving_default", TRAIN: "train", EVAL: "eval"}
METHOD_NAMES = {
    SERVE: "tensorflow/serving/predict",
    TRAIN: "tensorflow/supervised/training",
    EVAL: "tensorflow/supervised/eval",
}
# loader_impl.get_train_op() looks the train op up under this signature key,
# in an output of the same name.
TRAIN_OP_SIGNATURE_KEY = "__saved_model_train_op"
GLOBAL_STEP_COLLECTION = "global_step"

SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
VARIABLES_DIR = "variables"
VARIABLES_PREFIX = "variables/variables"
# Largest checkpoint data file but for a single bigger tensor (see export_core.tf_internals.shards).
SHARD_BYTES = 1 << 30
ASSETS_DIR = "assets"
MODEL_JSON = "assets/saved_model.json"
MANIFEST = "export_manifest.json"
# The manifest's Ed25519 signature, bound to the version number (artifacts/signing.py).
SIGNATURE = "export_manifest.sig"
# Verification's inputs and the model's outputs on them (see golden.py).
GOLDEN = "golden.npz"

# Groups of variables in the checkpoint. Every MetaGraph's object graph uses the
# same group names and orders, so one checkpoint serves all of them.
MODEL_VARIABLES = "model_variables"
OPTIMIZER_VARIABLES = "optimizer_variables"
METRIC_VARIABLES = "metric_variables"
# Lookup tables and other non-variable resources a graph uses; not checkpointed
# (each MetaGraph re-creates and initializes them from constants or assets/).
RESOURCES = "resources"

LOSS_KEY = "loss"
TARGET_SUFFIX = "_target"
