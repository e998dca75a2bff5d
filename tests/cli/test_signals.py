"""SIGTERM and Ctrl-C stop the long-running commands, whenever they arrive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from owm_cli.signals import stopped_by_signals
from tests.server.test_durability_and_serve import ROOT

DRAINING_FOR_A_MINUTE = """
import time
from owm_cli.signals import stopped_by_signals
with stopped_by_signals() as stop:
    print("ready", flush=True)
    stop.wait()
    print("draining", flush=True)
    time.sleep(60)
"""


def test_sigterm_sets_the_stop_event_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stopped_by_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_sets_the_stop_event_instead_of_raising() -> None:
    with stopped_by_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(5)


def test_a_signal_landing_while_the_main_thread_holds_the_events_lock_still_stops() -> None:
    # The race a handler calling stop.set() loses: the main thread is inside stop.wait(),
    # holding the event's lock, when the signal's handler runs on that same thread.
    with stopped_by_signals() as stop:
        with stop._cond:  # the lock stop.wait() holds for a moment
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler has run by now, on this thread
            assert not stop.is_set()
        assert stop.wait(5)


def test_leaving_without_a_signal_leaves_the_event_unset() -> None:
    with stopped_by_signals() as stop:
        pass
    assert not stop.is_set()


def test_a_second_ctrl_c_while_draining_stops_the_process_at_once() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", DRAINING_FOR_A_MINUTE], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGINT)
        assert process.stdout.readline() == "draining\n"  # the first one drains
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 128 + signal.SIGINT
        assert process.stderr is not None and "stopped at once" in process.stderr.read()
    finally:
        process.kill()
        process.wait()
