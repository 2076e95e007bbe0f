"""The Prefect layer of keras-savedmodel-export, under the project's own import name.

``keras_export.flows`` (the flows and the ``keras-export`` CLI) and
``keras_export.tasks`` (one task per step) are the repository's top-level
``flows/`` and ``tasks/`` folders: the wheel installs them here, so a user's own
``flows`` or ``tasks`` module (Celery, Invoke...) never collides with them. The
plain-Python core stays ``export_core``.
"""

from __future__ import annotations

import os

# In a checkout (tests, ``prefect deploy`` from the repository) flows/ and tasks/
# sit beside this folder, not in it: look for them there too.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_ROOT, "pyproject.toml")) and os.path.isdir(
    os.path.join(_ROOT, "flows")
):
    __path__.append(_ROOT)  # noqa: F821 - the package's own search path

__all__: list[str] = []
