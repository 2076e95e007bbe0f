"""A base of versions on any store, used as a model registry: needs only fsspec.

``versions`` (listing, inspecting, re-verifying and comparing versions), ``labels``
(stable, canary... with promote and rollback), ``signature_gate`` (the serving-signature
compatibility check), ``serving_config`` (TF Serving's model config), ``newest_source``
(the newest trained model under a prefix, and whether it is already published), ``signed``
(requiring versions signed by a key before promoting or serving them).
"""
