"""A task worker that takes a second, then answers like the real one (drain tests)."""

from __future__ import annotations

import sys
import time

from owm_adapters.node import task_worker

if __name__ == "__main__":
    time.sleep(1.0)
    sys.exit(task_worker.main())
