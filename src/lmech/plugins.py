"""Your own laws: plugin modules that register experiments, loaded by every ``lmech`` command.

Two ways to make a law known (both may be used at once):

* the environment variable ``LMECH_PLUGINS``: comma-separated module names, e.g.
  ``LMECH_PLUGINS=my_lab.laws lmech list``;
* an entry point in the group ``lmech.laws`` of an installed package's ``pyproject.toml``::

      [project.entry-points."lmech.laws"]
      my_lab = "my_lab.laws"

Importing the module runs its ``@register`` decorators. The CLI loads plugins before any command
(``list``, ``run``, ``check``, ``sweep``, ``runs``, ``report``), and sweep workers load them before any
run (local processes and Ray workers alike), so a plugin must be importable wherever the runs go.
"""

from __future__ import annotations

import importlib
import os
from importlib import metadata

from lmech.errors import BadInput

PLUGINS_ENV = "LMECH_PLUGINS"
ENTRY_POINT_GROUP = "lmech.laws"


def plugin_modules(modules: str | None = None) -> list[str]:
    """The module names in ``modules`` (default: ``$LMECH_PLUGINS``), comma-separated, blanks dropped."""
    text = os.environ.get(PLUGINS_ENV, "") if modules is None else modules
    return [m.strip() for m in text.split(",") if m.strip()]


def load_plugins(modules: str | None = None, *, entry_points: bool = True) -> list[str]:
    """Import the plugin modules so that their experiments register; return what was loaded.

    ``modules`` (default ``$LMECH_PLUGINS``) are comma-separated module names; with ``entry_points``
    every entry point of the group ``lmech.laws`` is loaded too (its value names a module, or an
    object inside one). Importing twice is harmless (Python caches modules). A module that cannot be
    imported raises :class:`~lmech.errors.BadInput` naming it and where it came from.
    """
    import lmech.experiments  # noqa: F401  (the law book first: plugins register after it)

    loaded = []
    for name in plugin_modules(modules):
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  (any failure to import is the plugin's bad input)
            raise BadInput(PLUGINS_ENV, name, f"an importable module ({type(exc).__name__}: {exc})") from None
        loaded.append(name)
    if entry_points:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001
                dist = ep.dist.name if ep.dist is not None else "?"
                raise BadInput(f"entry point {ENTRY_POINT_GROUP}:{ep.name} (package {dist})", ep.value,
                               f"an importable module ({type(exc).__name__}: {exc})") from None
            loaded.append(ep.value)
    return loaded


__all__ = ["ENTRY_POINT_GROUP", "PLUGINS_ENV", "load_plugins", "plugin_modules"]
