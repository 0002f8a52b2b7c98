"""Issue 21: what ``make demo`` shows (task lines, one bar per phase, the table, the picture last).

The demo's quality bars are measured by ``benchmarks/demo_quality.py`` (3 seeds, minutes of
training), not here; these tests check the console and the result table on real pipeline output
shapes, and that the demo profile is the cpu profile on the sample.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from texinspect.cli.demo import result_table
from texinspect.cli.demo_console import PipelineConsole, run_quietly
from texinspect.config import load_config
from texinspect.errors import DataError
from texinspect.kubeflow.local import latest_run

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"

# Lines as kfp.local's SubprocessRunner prints them (colours included) around a training task.
KFP_LINES = [
    "12:01:36.257 - INFO - Executing task \x1b[96m'train-phase1'\x1b[0m",
    "12:01:36.258 - INFO - Streamed logs:",
    '    [KFP Executor 2026-12-07 12:01:36,307 INFO]: Got executor_input:',
    '    {"inputs": {"artifacts": {}}}',
    "    [KFP Executor 2026-12-07 12:01:37,272 WARNING]: perceptual loss switched off (rbae.perceptual=none)",
    "    phase1:   0%|          | 0/300 [00:00<?, ?it/s]",
    "    phase1:  45%|████▌     | 135/300 [00:07<00:08, 19.1it/s, rec=0.0123]",
    "    phase1: 100%|██████████| 300/300 [00:15<00:00, 19.6it/s, rec=0.0101]",
    "12:01:52.898 - INFO - Task \x1b[96m'train-phase1'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m",
    "12:01:52.899 - INFO - Executing task \x1b[96m'train-phase2'\x1b[0m",
    "    phase2:  10%|█         | 50/500 [00:14<02:08, 3.5it/s]",
    "    phase2: 100%|██████████| 500/500 [02:20<00:00, 3.5it/s]",
    "12:04:14.917 - INFO - Task \x1b[96m'train-phase2'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m",
]


def test_console_shows_a_line_per_task_and_one_bar_per_phase_and_nothing_else() -> None:
    shown = io.StringIO()
    console = PipelineConsole(out=shown, show_bars=False)  # a StringIO is no terminal: bars are kept, not drawn
    bars_seen: dict[str, tuple[int, int]] = {}
    for line in KFP_LINES:
        console.feed(line)
        bars_seen.update({name: (console.steps[name], bar.total) for name, bar in console.bars.items()})
    console.close()
    assert bars_seen == {"phase1": (300, 300), "phase2": (500, 500)}  # one bar each, driven to the end
    text = shown.getvalue()
    task_lines = [t for t in text.splitlines() if t.startswith("  train-")]
    assert [t.split()[0:2] for t in task_lines] == [["train-phase1", "ok"], ["train-phase2", "ok"]]
    assert task_lines[0].endswith(", 300 steps)") and task_lines[1].endswith(", 500 steps)")
    for noise in ("executor_input", "WARNING", "Streamed logs", "inputs", "\x1b["):
        assert noise not in text
    assert console.finished == [("train-phase1", "SUCCESS"), ("train-phase2", "SUCCESS")]


def test_console_passes_errors_through_and_names_a_failed_task() -> None:
    shown = io.StringIO()
    console = PipelineConsole(out=shown)
    console.feed("    [KFP Executor 2026-12-07 12:01:37,272 ERROR]: train: dataset folder not found: /nope")
    console.feed("12:01:52.898 - INFO - Task 'train-phase1' finished with status FAILURE")
    console.close()
    assert "dataset folder not found: /nope" in shown.getvalue()
    assert "train-phase1" in shown.getvalue() and "FAILURE" in shown.getvalue()


def test_run_quietly_keeps_every_line_in_the_log_and_shows_the_tail_on_failure(
    tmp_path: Path, capsys
) -> None:
    script = "import sys\nfor i in range(100):\n    print(f'noise {i}')\nprint('the cause', file=sys.stderr)\nsys.exit(3)\n"
    log = tmp_path / "pipeline.log"
    code = run_quietly([sys.executable, "-c", script], log, PipelineConsole(out=io.StringIO()))
    assert code == 3
    lines = log.read_text().splitlines()
    assert len(lines) == 101 and lines[0] == "noise 0" and lines[-1] == "the cause"
    shown = capsys.readouterr().out
    assert "the cause" in shown and str(log) in shown and "noise 0\n" not in shown  # the tail only


def test_result_table_has_the_measures_and_says_na_for_what_the_data_cannot_give() -> None:
    table = result_table({"image_auroc": 1.0, "pixel_auroc": None, "aupro": 0.5, "precision": 0.9,
                          "recall": 1.0, "f1": 0.947, "pixel_f1": None, "n_good": 8, "n_defect": 18})  # fmt: skip
    assert "| image AUROC (is the image defective?) | 1.000 |" in table
    assert "| pixel AUROC (where is the defect?) | n/a |" in table
    assert "0.900 / 1.000 / 0.947" in table
    assert table.splitlines()[-1] == "(8 good and 18 defective images)"


def test_the_demo_profile_is_the_cpu_profile_on_the_128px_sample() -> None:
    demo, cpu = load_config(PARAMS, profile="demo"), load_config(PARAMS, profile="cpu")
    assert demo.data.image_size == 128 and demo.data.root == cpu.data.root
    assert demo.rbae == cpu.rbae and demo.synthesis == cpu.synthesis  # what the cpu profile measured, not a copy
    assert demo.data.augment == "dihedral" and cpu.data.augment == "none"
    assert demo.train.max_steps_phase1 > 0 and demo.train.max_steps_phase2 > 0 and demo.train.max_minutes == 0
    fm = load_config(PARAMS, ["model=fmrnet"], profile="demo")
    assert fm.fmrnet.memory_size <= 512 and fm.fmrnet.patch_size == 32  # the 40-image sample fills its memory


def test_the_readme_shows_the_demo_picture_small_enough_to_commit() -> None:
    repo = PARAMS.parent
    picture = repo / "docs" / "images" / "demo_overview.png"
    assert "](docs/images/demo_overview.png)" in (repo / "README.md").read_text()
    assert picture.is_file() and picture.stat().st_size < 300 * 1024
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latest_run_names_the_folder_when_there_is_no_run(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"no local pipeline run under {tmp_path / 'kfp'}"):
        latest_run(tmp_path)
