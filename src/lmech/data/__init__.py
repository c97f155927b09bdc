"""Data: embedded data sets (synthetic generators, scikit-learn digits) and a user's own files.

:func:`load` reads inputs and targets from a ``.npz``, ``.pt``, ``.csv`` or ``.parquet`` file, checked
(:mod:`lmech.data.load`); laws that train on a dataset take one with ``--set data=PATH``.
"""

from lmech.data.load import Dataset, law_data, load, parse_source

__all__ = ["Dataset", "law_data", "load", "parse_source"]
