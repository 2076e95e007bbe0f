"""The steps of an export, one module each, in the order ``export_core.sequence`` runs them.

``validate`` → ``golden`` → ``clone`` → ``trace`` → ``write`` (checkpoint and proto) →
``verify`` (the loaders; ``parity``, ``restore_check``; ``training_check`` with Keras's own
steps as the ``oracle``) → ``publish`` (stage, the signature gate, publish). ``build`` holds
one clone at a time through clone, trace and write.
"""
