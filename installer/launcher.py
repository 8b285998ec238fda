"""Entry script of the frozen Tilewatch build (PyInstaller runs this file).

It must stay tiny: a multiprocessing child of a frozen program re-runs this
script, and ``freeze_support()`` has to take over before anything heavy (Qt,
the app, TensorFlow) is imported.
"""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()

    from app.__main__ import main

    raise SystemExit(main())
