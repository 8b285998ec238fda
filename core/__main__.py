"""``python -m core``: the Tilewatch command line."""

import os

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from core.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
