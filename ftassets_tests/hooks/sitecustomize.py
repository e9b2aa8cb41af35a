"""Imported at start-up by every Python process that has this folder on its PYTHONPATH: only the processes a
test starts with it there, never the test run itself.

With ``FTASSETS_TEST_KILL_AFTER_SAVE_STEP=N`` in the environment, ``ftassets.training.trainer.train`` gets one
more callback, ``KillAfterSave(N)``: right after the checkpoint of step N is written it SIGKILLs its whole
process group, as a crash or an OOM kill would, at the same step on any machine. The variable and this folder
reach the Dagster step processes with the environment, so a ``dagster asset materialize`` started in its own
session dies at that step with every process it started."""

import os
import signal

KILL_AFTER_SAVE_STEP = "FTASSETS_TEST_KILL_AFTER_SAVE_STEP"


def _install(step: int) -> None:
    from transformers import TrainerCallback

    import ftassets.training.trainer as trainer

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                os.killpg(os.getpgid(0), signal.SIGKILL)

    train = trainer.train

    def train_then_killed(*args, callbacks=(), **kwargs):
        return train(*args, callbacks=[*callbacks, KillAfterSave()], **kwargs)

    trainer.train = train_then_killed


if os.environ.get(KILL_AFTER_SAVE_STEP):
    _install(int(os.environ[KILL_AFTER_SAVE_STEP]))
