"""A killed sweep resumes: finished trials stay, the killed trial continues from its checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from texinspect.tuning import run_sweep
from texinspect.tuning.study import make_storage, open_study, recover_dead_trials, resume_of

from .conftest import FAKE_MODULE, FAST_STEPS, TESTS

RUNNER = (
    "import sys; from texinspect import models; models.register('rbae', {module!r}); "
    "from texinspect.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _start_sweep(params: Path, out: Path, ready: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]),
        FAKE_BLOCK_RUN="0001",  # trial 1 stops at phase-2 step 3 (its step-2 checkpoint is written)
        FAKE_BLOCK_STEP="3",
        FAKE_READY_FILE=str(ready),
    )
    argv = ["sweep", "--model", "rbae", "--trials", "3", "--config", str(params), "--profile", "smoke", "--out", str(out)]
    for item in FAST_STEPS:
        argv += ["--set", item]
    code = RUNNER.format(module=FAKE_MODULE)
    return subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_killed_study_resumes_with_its_trials_intact(write_params, make_plan, fake_family, tmp_path: Path) -> None:
    params = write_params()
    out = tmp_path / "sweep"
    ready = tmp_path / "ready"
    proc = _start_sweep(params, out, ready)
    deadline = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"sweep never reached the blocking step:\n{proc.stdout.read().decode()[-3000:]}")
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    plan = make_plan(params, out, 3)
    before = open_study(plan.ref, plan.settings).trials
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING]
    killed_params = before[1].params

    result = run_sweep(plan, plots=False)
    after = open_study(plan.ref, plan.settings).trials
    # trial 0 untouched; trial 1 failed and continued by trial 2; trial 3 makes the study's 3
    assert after[0].state == TrialState.COMPLETE and after[0].value == before[0].value
    assert after[0].params == before[0].params
    assert after[1].state == TrialState.FAIL
    assert after[2].state == TrialState.COMPLETE and resume_of(after[2]) == 1
    assert after[2].params == killed_params
    assert after[2].user_attrs["run_dir"] == str(out / "trials" / "0001")
    assert after[3].state == TrialState.COMPLETE and len(after) == 4
    assert result.ran == 2 and result.summary["states"] == {"COMPLETE": 3, "FAIL": 1}
    # the continued trial resumed from its phase-2 checkpoint at step 2: phase 1 was not rerun
    import json

    ran = json.loads((out / "trials" / "0001" / "fake_train.json").read_text())["steps_run_here"]
    assert ran == {"phase1": 0, "phase2": 2}
    # a second resume finds nothing to do
    assert run_sweep(make_plan(params, out, 3), plots=False).ran == 0


def test_ctrl_c_stops_the_sweep_and_the_next_start_continues_that_trial(
    write_params, make_plan, fake_family, tmp_path: Path
) -> None:
    space = {"rbae": {"train.weight_decay": {"type": "categorical", "choices": [0.0, 2.0]}}}
    plan = make_plan(write_params(space=space), tmp_path / "sweep", 2)
    study = open_study(plan.ref, plan.settings)
    study.enqueue_trial({"train.weight_decay": 2.0})
    study.enqueue_trial({"train.weight_decay": 0.0})
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, plots=False)
    (first,) = open_study(plan.ref, plan.settings).trials[:1]
    assert first.state == TrialState.FAIL and first.user_attrs["interrupted"] is True
    result = run_sweep(plan, plots=False)  # the fake raises only once per process
    trials = open_study(plan.ref, plan.settings).trials
    resumed = [t for t in trials if resume_of(t) == 0]
    assert len(resumed) == 1 and resumed[0].state == TrialState.COMPLETE
    assert resumed[0].params == {"train.weight_decay": 2.0}
    assert result.summary["states"] == {"FAIL": 1, "COMPLETE": 2}


def test_an_interrupted_trial_is_queued_again_on_the_next_start(write_params, make_plan, fake_family, tmp_path: Path) -> None:
    plan = make_plan(write_params(), tmp_path / "sweep", 2)
    study = open_study(plan.ref, plan.settings)
    trial = study.ask()
    trial.suggest_float("train.lr", 0.01, 0.9, log=True)
    trial.suggest_int("rbae.ffm_kernel", 1, 7, step=2)
    trial.set_user_attr("interrupted", True)
    study.tell(trial, state=TrialState.FAIL)
    assert recover_dead_trials(study) == [0]
    assert recover_dead_trials(study) == []  # queued once only
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].params == study.trials[0].params
    assert resume_of(waiting[0]) == 0


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_whose_heartbeat_stops_is_failed_and_queued_again(write_params, make_plan, tmp_path: Path) -> None:
    """The path for workers on other machines (pipeline pods): Optuna's stale-trial check."""
    plan = make_plan(write_params(sweep={"heartbeat_seconds": 1}), tmp_path / "sweep", 2)
    study = open_study(plan.ref, plan.settings)
    storage = study._storage
    # Issue 19: Optuna's own re-queue, not a home-made one
    assert isinstance(storage.get_heartbeat_stale_trial_callback(), optuna.storages.RetryHeartbeatStaleTrialCallback)
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(0.01, 0.9, log=True)})
    trial.set_user_attr("host", "another-pod")  # not this machine: only the heartbeat can tell
    trial.set_user_attr("run_dir", "/elsewhere/trials/0000")
    storage.record_heartbeat(trial._trial_id)  # the worker beat once, then died
    assert recover_dead_trials(study) == []
    time.sleep(4.5)  # grace period 3 x heartbeat_seconds; SQLite timestamps have 1 s resolution
    optuna.storages.fail_stale_trials(study)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs == {"host": "another-pod", "run_dir": "/elsewhere/trials/0000"}
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[1]) == 0
    assert trials[1].params == trials[0].params
    assert make_storage(plan.ref, 0).get_heartbeat_interval() is None
