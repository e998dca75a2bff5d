"""The isolated task worker starts lean: every task pays for what its process imports."""

from __future__ import annotations

import subprocess
import sys


def test_the_task_workers_code_imports_neither_attrs_nor_numpy_nor_torch() -> None:
    probe = (
        "import sys, owm_adapters.node.task_exec, owm_core.knowledge.reader\n"
        "print(sorted(m for m in ('attrs', 'numpy', 'torch') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
