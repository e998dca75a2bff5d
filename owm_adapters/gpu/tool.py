"""Running a vendor GPU tool: absolute path, no shell, a time limit, every failure reported.

Owns :class:`ProbeProblem` (why one vendor's GPUs could not be read, worded for the operator),
:class:`GpuReading` (what a parser made of a tool's output), :func:`probe_tool`, the one
place in ``owm_adapters.gpu`` that starts a process (SRS-NODE-03), and :class:`ToolProbe`, the
configurable probe each vendor module specialises with its tool, arguments and parser.

The rules, whichever vendor: a tool that is not installed means "no GPU of that vendor" and is
not a problem (a CPU-only machine is a valid t1 node). A tool that is installed but fails — it
cannot be started, exits non-zero, prints nothing usable or hangs past the time limit — also
yields no GPU, but leaves a :class:`ProbeProblem` behind and a logged warning, so that
``owm-node`` can tell the operator why the node was classified without that vendor's GPUs.
Nothing here raises for a broken tool.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from typing import ClassVar

import attrs

from owm_core import fields
from owm_core.nodes.hardware import GpuDevice

log = logging.getLogger(__name__)

#: How long a tool may take before it is killed; nvidia-smi answers in well under a second
#: with persistence mode on, but can take a few seconds per GPU to wake the driver without it.
DEFAULT_TIMEOUT_S = 10.0

_CLIP = 300


def clip(text: str, limit: int = _CLIP) -> str:
    """``text`` on one line with runs of whitespace collapsed, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@attrs.frozen
class ProbeProblem:
    """Why the GPUs of one vendor tool could not be read (tool missing is *not* a problem)."""

    tool: str
    reason: str

    def __str__(self) -> str:
        return f"{self.tool}: {self.reason}"


@attrs.frozen
class GpuReading:
    """What a parser made of a tool's output: the GPUs it understood and what it could not.

    Parsers never raise: rows they cannot read become ``problems`` and the other rows still
    count. A reading with no devices always carries at least one problem.
    """

    devices: tuple[GpuDevice, ...] = ()
    problems: tuple[str, ...] = ()


@attrs.frozen
class ToolRun:
    """The exit status and decoded output of one finished tool run."""

    returncode: int
    stdout: str
    stderr: str


def locate(tool: str, executable: str | None, search_path: str | None) -> str | None:
    """The absolute path of ``tool``: ``executable`` if configured, else a ``PATH`` search.

    ``search_path`` replaces ``$PATH`` for the search (tests and operators who want a fixed
    location use it). Returns None when the tool is not installed.
    """
    if executable is not None:
        return os.path.abspath(executable)
    found = shutil.which(tool, path=search_path)
    return os.path.abspath(found) if found is not None else None


def run_tool(path: str, args: Sequence[str], timeout_s: float) -> ToolRun | str:
    """Run ``path`` with ``args`` (no shell) and return its output, or why it did not finish.

    The tool runs in its own session; on timeout the whole process group is killed, so a tool
    that forked helpers holding our pipes cannot keep the node waiting past ``timeout_s``.
    """
    try:
        # The argv is an absolute path found by ``locate`` plus constant arguments: no shell.
        process = subprocess.Popen(  # noqa: S603
            [path, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        return f"could not be started ({exc.strerror or exc})"
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        return f"gave no answer within {timeout_s:g} s and was killed"
    return ToolRun(returncode=process.returncode, stdout=stdout, stderr=stderr)


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def probe_tool(
    tool: str,
    args: Sequence[str],
    parse: Callable[[str], GpuReading],
    *,
    executable: str | None = None,
    search_path: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[list[GpuDevice], list[ProbeProblem]]:
    """Find, run and parse one vendor tool; the GPUs it reports and the problems met on the way.

    Never raises for anything the tool does (SRS-NODE-03): see the module docstring.
    """
    path = locate(tool, executable, search_path)
    if path is None:
        log.debug("%s is not installed: no GPU of that vendor", tool)
        return [], []
    problems: list[str] = []
    devices: list[GpuDevice] = []
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        problems.append(f"configured executable {path} is not an executable file")
    else:
        outcome = run_tool(path, args, timeout_s)
        if isinstance(outcome, str):
            problems.append(outcome)
        elif outcome.returncode != 0:
            said = clip(outcome.stdout + " " + outcome.stderr)
            problems.append(
                f"exited with status {outcome.returncode}" + (f": {said}" if said else "")
            )
        else:
            reading = parse(outcome.stdout)
            devices = list(reading.devices)
            problems.extend(reading.problems)
            if not devices and outcome.stderr.strip():
                problems.append(f"stderr: {clip(outcome.stderr)}")
    found = [ProbeProblem(tool=tool, reason=reason) for reason in problems]
    for problem in found:
        log.warning("GPU probe: %s", problem)
    return devices, found


@attrs.define
class ToolProbe:
    """One vendor tool run on demand: a subclass names the ``tool``, its ``args`` and ``parse``.

    ``executable`` pins the tool's path (else ``$PATH``, or ``search_path`` if given, is
    searched); ``timeout_s`` bounds each run. After :meth:`devices`, ``problems`` says why
    GPUs may be missing (empty when the tool is simply not installed).
    """

    tool: ClassVar[str]
    args: ClassVar[tuple[str, ...]]

    executable: str | None = None
    search_path: str | None = None
    timeout_s: float = attrs.field(
        default=DEFAULT_TIMEOUT_S, validator=fields.number(minimum=0.001)
    )
    problems: list[ProbeProblem] = attrs.field(factory=list, init=False)

    def parse(self, text: str) -> GpuReading:
        """What the tool's standard output ``text`` says; never raises (see :class:`GpuReading`)."""
        raise NotImplementedError

    def devices(self) -> list[GpuDevice]:
        """This vendor's GPUs on this machine; [] without the tool or when it fails."""
        found, self.problems = probe_tool(
            self.tool,
            self.args,
            self.parse,
            executable=self.executable,
            search_path=self.search_path,
            timeout_s=self.timeout_s,
        )
        return found
