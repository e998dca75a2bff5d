"""A task worker that misbehaves on purpose (tests of the runner's isolation, SRS-NODE-05).

The task's prompt says how: ``crash`` (SIGSEGV), ``exit`` (os._exit without a result),
``loop`` (forks a child, then both spin forever), ``hog`` (allocates until the memory limit),
``garbage`` (non-JSON on stdout), ``env`` (reports its environment), else echoes the prompt.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from owm_adapters.node.task_worker import limit_memory


def main() -> None:
    memory_mb = int(sys.argv[sys.argv.index("--memory-mb") + 1])
    limit_memory(memory_mb)
    request = json.loads(sys.stdin.read())
    how = json.loads(request["input"])["prompt"]
    if how == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if how == "exit":
        os._exit(9)
    if how == "loop":
        child = os.fork()
        if child == 0:
            with open(os.environ["OWM_TEST_CHILD_PID_FILE"], "w") as handle:
                handle.write(str(os.getpid()))
        while True:
            pass
    if how == "hog":
        try:
            blocks = [bytearray(64 * 1024 * 1024) for _ in range(1000)]
            print(json.dumps({"ok": True, "output": {"blocks": len(blocks)}}))
        except MemoryError:
            print(json.dumps({"ok": False, "error": f"memory limit of {memory_mb} MiB exceeded"}))
        return
    if how == "garbage":
        print("this is not json")
        return
    if how == "env":
        keys = ("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
                "ALL_PROXY")
        print(json.dumps({"ok": True, "output": {k: os.environ.get(k) for k in keys}}))
        return
    print(json.dumps({"ok": True, "output": {"echo": how}}))


if __name__ == "__main__":
    main()
