"""lmech: the laboratory of learning mechanics.

Theory predicts, training measures, a verdict compares. See ``lmech list`` for the law book and
DESIGN.md for the architecture.
"""

__version__ = "0.1.0"
