"""Tilewatch's desktop app: a PySide6 + pyqtgraph view over ``core``.

The app listens to the Trainer's events and reads run directories; it never
reaches into trainer internals and never imports TensorFlow at module level
(the window must appear before TensorFlow has finished importing).
"""

__all__ = ["APP_NAME"]

APP_NAME = "tilewatch"
