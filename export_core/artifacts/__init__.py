"""Files an export writes beside the TensorFlow graph and checkpoint, and reading them back.

``manifest`` (every file's sha256, signatures, lineage, verification), ``signing`` (the
manifest's Ed25519 signature, bound to the version number), ``golden`` (the
inputs verification fed and the model's outputs), ``warmup`` (TF Serving's warm-up
requests), ``lineage`` (where a version came from), ``saved_model`` (a written
SavedModel's MetaGraphs and signatures, as ``saved_model_cli`` shows them).
"""
