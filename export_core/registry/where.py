"""Conditions on the metadata recorded with each version: ``versions --where``.

``metadata.<key>[.<key>...] <op> <value>``, e.g. ``metadata.auc>=0.9``,
``metadata.data.rows>1000``, ``metadata.stage==prod``. The keys are a path into the
``metadata`` the export recorded in its manifest's lineage (``--metadata``,
``run_export(metadata=...)``); ``op`` is one of ``>=``, ``<=``, ``>``, ``<``, ``==``,
``!=``; the value is read as JSON when it parses (``0.9``, ``true``, ``null``,
``"prod"``), else taken as a bare string (``prod``).

A version matches only when the key is there. ``==`` and ``!=`` compare values of one
kind (a number never equals ``true``); the order operators compare two numbers or two
strings, and any other pair does not match, rather than stopping the listing.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from export_core.errors import ExportValidationError

FORM = (
    "metadata.<key>[.<key>...] <op> <value> with <op> one of >=, <=, >, <, ==, !=, "
    "e.g. 'metadata.auc>=0.9' or 'metadata.stage==prod'"
)
# A value never starts with an operator's character: "metadata.auc>=" is not "> '='".
_CONDITION = re.compile(
    r"\s*metadata\.(?P<path>[^.<>=!\s]+(?:\.[^.<>=!\s]+)*)\s*"
    r"(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>[^<>=!\s].*?)\s*"
)
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_MISSING = object()


@dataclass(frozen=True)
class Condition:
    """One parsed ``--where`` expression."""

    path: tuple[str, ...]
    op: str
    value: Any
    text: str

    def matches(self, metadata: Mapping[str, Any] | None) -> bool:
        """Whether ``metadata`` (a version's recorded metadata) satisfies this condition."""
        found = _lookup(metadata, self.path)
        if found is _MISSING:
            return False
        if self.op in ("==", "!="):
            equal = _kind(found) == _kind(self.value) and found == self.value
            return equal if self.op == "==" else not equal
        if _kind(found) != _kind(self.value) or _kind(found) not in ("number", "string"):
            return False
        return _ORDER[self.op](found, self.value)


def parse_condition(text: Any) -> Condition:
    """Parses ``metadata.<key> <op> <value>`` (see the module docstring).

    Raises:
        ExportValidationError: ``text`` is not of that form.
    """
    found = _CONDITION.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise ExportValidationError(f"--where {text!r} is not a condition: use {FORM}.")
    raw = found.group("value")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return Condition(tuple(found.group("path").split(".")), found.group("op"), value, text)


def parse_conditions(texts: Iterable[Any] | None) -> list[Condition]:
    """Every expression parsed (all must hold); the first malformed one raises."""
    return [parse_condition(text) for text in texts or ()]


def matches_all(metadata: Mapping[str, Any] | None, conditions: Iterable[Condition]) -> bool:
    """Whether ``metadata`` satisfies every condition (True for none)."""
    return all(condition.matches(metadata) for condition in conditions)


def _lookup(metadata: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(metadata, Mapping) or key not in metadata:
            return _MISSING
        metadata = metadata[key]
    return metadata


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__
