"""pytest plugin: make PySide6 and pyqtgraph unimportable for this session.

``make test`` runs tests/core with ``-p tests.block_gui`` so that the core
suite proves it needs no GUI stack (the napari "headless" job).
"""

import importlib.abc
import sys

BLOCKED = ("PySide6", "pyqtgraph", "shiboken6", "PyQt5", "PyQt6", "qtpy")


class _BlockGui(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"{fullname} is blocked: tests/core must pass without a GUI stack")
        return None


sys.meta_path.insert(0, _BlockGui())
for _name in list(sys.modules):
    if _name.split(".")[0] in BLOCKED:
        del sys.modules[_name]
