"""What ``make demo`` shows while the local pipeline runs: one line per task, one bar per phase.

``kfp.local`` streams every task's executor input, outputs and log records to the terminal
(about 1,500 lines for one demo run), which buries the one thing a newcomer wants to see: that
the model trains, and how far it is. The demo therefore runs ``texinspect pipeline run --local``
in a subprocess, writes everything it prints to a log file, and shows only

- one line per pipeline task when it ends (``train-phase1 ... ok (15 s)``),
- one progress bar per training phase, driven by the ``phase1`` / ``phase2`` bars the training
  loop prints inside the task (``135/300``),
- ERROR lines as they come, and on failure the end of the log.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tqdm.auto import tqdm

PHASES = ("phase1", "phase2")  # the training loop's bar names (texinspect.training.loop)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK_START = re.compile(r"Executing task '([^']+)'")
_TASK_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
_BAR = re.compile(r"^\s*(phase1|phase2):\s+\d+%\|.*\|\s*(\d+)/(\d+)")
_ERROR = re.compile(r"\bERROR\b|Traceback|^\s*error:")


@dataclass
class PipelineConsole:
    """Turns the pipeline's output lines into task lines and phase bars (``feed`` one line at a time)."""

    out: IO[str] | None = None  # where task lines go (None: tqdm.write's default, stdout)
    show_bars: bool | None = None  # None: on a terminal only (in a log file every update would be a line)
    started: dict[str, float] = field(default_factory=dict)
    finished: list[tuple[str, str]] = field(default_factory=list)  # (task, status) in the order they ended
    bars: dict[str, tqdm] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)  # per phase; a disabled bar does not count

    def __post_init__(self) -> None:
        if self.show_bars is None:
            stream = self.out if self.out is not None else sys.stdout
            self.show_bars = bool(getattr(stream, "isatty", lambda: False)())

    def feed(self, raw: str) -> None:
        line = _ANSI.sub("", raw.rstrip("\n"))
        if m := _BAR.match(line):
            self._advance(m.group(1), int(m.group(2)), int(m.group(3)))
        elif m := _TASK_START.search(line):
            self.started[m.group(1)] = time.monotonic()
        elif m := _TASK_END.search(line):
            self._task_done(m.group(1), m.group(2))
        elif _ERROR.search(line):
            self._write("  " + line.strip())

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()

    def _advance(self, phase: str, step: int, total: int) -> None:
        bar = self.bars.get(phase)
        if bar is None:
            bar = tqdm(total=total, desc=f"  {phase}", unit="step", disable=not self.show_bars, file=self.out,
                       dynamic_ncols=True, leave=True)  # fmt: skip
            self.bars[phase] = bar
        bar.total = total
        done = self.steps.get(phase, 0)
        bar.update(max(0, step - done))
        self.steps[phase] = max(done, step)

    def _task_done(self, task: str, status: str) -> None:
        steps = ""
        for name in [n for n in self.bars if task == f"train-{n}"]:
            self.bars.pop(name).close()
            steps = f", {self.steps.get(name, 0)} steps"
        seconds = time.monotonic() - self.started.get(task, time.monotonic())
        verdict = "ok" if status == "SUCCESS" else status
        self.finished.append((task, status))
        self._write(f"  {task:<20} {verdict} ({seconds:.0f} s{steps})")

    def _write(self, text: str) -> None:
        tqdm.write(text, file=self.out)


def run_quietly(argv: Sequence[str], log_path: Path, console: PipelineConsole | None = None) -> int:
    """Run ``argv``, every output line to ``log_path``, and what ``console`` makes of it to the terminal.

    Returns the exit code; a failure prints the last 30 lines of the log and its path.
    """
    console = console or PipelineConsole()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log, subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        try:
            _pump(proc.stdout, log, console)
        finally:
            console.close()
        code = proc.wait()
    if code:
        tail = log_path.read_text(errors="replace").splitlines()[-30:]
        print("\n".join(["  " + _ANSI.sub("", t) for t in tail]))
        print(f"  (whole log: {log_path})")
    return code


def _pump(lines: Iterable[str], log: IO[str], console: PipelineConsole) -> None:
    for line in lines:
        log.write(line)
        console.feed(line)
