"""``python -m fxonnx.cli``: the same as the ``fxonnx`` console script."""

import sys

from ._main import main

sys.exit(main())
