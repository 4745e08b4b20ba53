"""``python -m benchmarks.quality``: run the quality benchmark (see benchmarks.quality.main)."""

import sys

from benchmarks.quality.main import main

sys.exit(main())
