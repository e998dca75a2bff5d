"""The isolated task process: ``python -m owm_adapters.node.task_worker`` (SRS-NODE-05).

Applies the memory limit to itself *before* importing anything heavy (``RLIMIT_AS``), imports
the task code, then reads one JSON request on stdin (``task_type``, ``schema_id``, ``version``,
``input`` as text, ``model_version`` the sub-model version the assignment pins; a spare worker
waits here, :mod:`.task_runner`), validates the input again (defence in depth; SRS-NODE-07),
executes it with :mod:`.task_exec` and writes one JSON line on stdout:
``{"ok": true, "output": {...}}`` or ``{"ok": false, "error": "..."}``.
A crash or a runaway loop only ever takes this process down: the daemon kills its process group
on timeout (:mod:`.task_runner`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys


def limit_memory(memory_mb: int) -> None:
    """Cap this process's address space at ``memory_mb`` MiB (0: no limit)."""
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the daemon dies, even by SIGKILL (no orphans)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the daemon died before prctl took effect
        os._exit(137)


def main(argv: list[str] | None = None) -> int:
    """Run one task from stdin; exit 0 with a result, 3 when the task itself failed."""
    parser = argparse.ArgumentParser(prog="owm-task-worker")
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--model-dir", default="")
    args = parser.parse_args(argv)
    die_with_parent()
    limit_memory(args.memory_mb)
    from owm_adapters.node.task_exec import execute
    from owm_core.market.task_types import validate_input

    request = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    try:
        raw = request["input"].encode("utf-8")
        _, data = validate_input(request["task_type"], request["schema_id"],
                                 int(request["version"]), raw)
        output = execute(request["task_type"], data, args.model_dir or None,
                         str(request.get("model_version") or ""))
    except MemoryError:
        reply = {"ok": False, "error": f"memory limit of {args.memory_mb} MiB exceeded"}
    except Exception as exc:  # the task failed; report why, never a traceback to the network
        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    else:
        reply = {"ok": True, "output": output}
    sys.stdout.write(json.dumps(reply, allow_nan=False) + "\n")
    sys.stdout.flush()
    return 0 if reply["ok"] else 3


if __name__ == "__main__":
    sys.exit(main())
