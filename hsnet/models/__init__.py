"""The model zoo. Importing this package registers every model family (one module each).

Every module in this package except ``base`` is imported here, in sorted order, so a new family is
registered (and picked up by the parametrized tests) the moment its file is added.
"""

import importlib
import pkgutil

from hsnet.models.base import Classifier

__all__ = ["Classifier"]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base" and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")
