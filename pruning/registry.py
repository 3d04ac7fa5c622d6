"""Every method by the name YAML files give it: ``METHODS[name]`` is its class.

A method registers itself by being defined (``pruning.base.Method.__init_subclass__``); this
module imports every module of ``pruning/methods/``, so a new method is one new file there.
"""

from __future__ import annotations

import importlib
import pkgutil

import pruning.methods
from pruning.base import METHOD_CLASSES, Method

for _module in sorted(m.name for m in pkgutil.iter_modules(pruning.methods.__path__)):
    importlib.import_module(f"pruning.methods.{_module}")

METHODS: dict[str, type[Method]] = dict(sorted(METHOD_CLASSES.items()))
