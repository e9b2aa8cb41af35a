"""Imported at start-up by every Python process that has this folder on its PYTHONPATH: only the processes a
test starts with it there, never the test run itself.

With ``FTASSETS_TEST_KILL_AFTER_SAVE_STEP=N`` in the environment, ``ftassets.training.trainer.train`` gets one
more callback, ``KillAfterSave(N)``: right after the checkpoint of step N is written it SIGKILLs its whole
process group, as a crash or an OOM kill would, at the same step on any machine. The variable and this folder
reach the Dagster step processes with the environment, so a ``dagster asset materialize`` started in its own
session dies at that step with every process it started.

With ``FTASSETS_TEST_KILL_AT=module:function`` (or ``module:function:N``) the N-th call (default: the first) of
that function SIGKILLs the process group before it runs: the fault tests kill a merge, a GGUF export or an
evaluation in the middle of writing its artifact. The function is replaced in its own module at start-up, before
anything imports it, so ``from module import function`` elsewhere gets the replacement too."""

import importlib
import os
import signal

KILL_AFTER_SAVE_STEP = "FTASSETS_TEST_KILL_AFTER_SAVE_STEP"
KILL_AT = "FTASSETS_TEST_KILL_AT"


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


def _kill_at(target: str) -> None:
    module_name, name, *nth = target.split(":")
    module, calls = importlib.import_module(module_name), [0]
    function = getattr(module, name)

    def killed_at_call(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(nth[0] if nth else 1):
            os.killpg(os.getpgid(0), signal.SIGKILL)
        return function(*args, **kwargs)

    setattr(module, name, killed_at_call)


if os.environ.get(KILL_AFTER_SAVE_STEP):
    _install(int(os.environ[KILL_AFTER_SAVE_STEP]))
if os.environ.get(KILL_AT):
    _kill_at(os.environ[KILL_AT])
