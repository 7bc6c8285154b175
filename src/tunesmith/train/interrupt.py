"""SIGINT / SIGTERM during training: finish the step, write a checkpoint, stop, print the resume command.

Preemptible cloud GPUs send SIGTERM and kill the process some seconds later; Ctrl-C sends SIGINT. The handler
only sets a flag (a checkpoint write is never cut in half by it); the callback turns the flag into "save now and
stop" at the end of the current step. A second signal stops at once (KeyboardInterrupt): the checkpoint of the
first one, if already written, is intact because checkpoints are published by an atomic rename.
"""

from __future__ import annotations

import signal
import sys
import threading

from transformers import TrainerCallback

from tunesmith.errors import TrainingError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(TrainingError):
    """Training stopped on a signal after writing a checkpoint; the exit code is 128 + the signal number."""

    def __init__(self, message: str, signum: int, hint: str | None = None):
        super().__init__(message, hint)
        self.exit_code = 128 + signum


class InterruptCallback(TrainerCallback):
    """Catch SIGINT/SIGTERM while the trainer runs; at the step's end ask it to save a checkpoint and stop."""

    def __init__(self, save: bool = True):
        self.save = save  # train.save_checkpoints (off for --smoke)
        self.signum: int | None = None
        self.step: int | None = None
        self._previous: dict[int, object] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread (e.g. a notebook's worker)
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum, frame):
        if self.signum is not None:  # the second signal: stop now
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        what = "writing a checkpoint after this step, then stopping" if self.save else "stopping after this step"
        name = signal.Signals(signum).name
        print(f"\n{name} received: {what} (send it again to stop at once)", file=sys.stderr, flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.signum is not None and self.step is None:
            self.step = state.global_step
            control.should_save = self.save
            control.should_training_stop = True
            control.should_evaluate = False

    def on_train_end(self, args, state, control, **kwargs):
        self._restore()

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def _callback(trainer) -> InterruptCallback | None:
    return next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, InterruptCallback)), None)


def restore_signal_handlers(trainer) -> None:
    """Put the previous handlers back even when training raised (on_train_end then never ran)."""
    callback = _callback(trainer)
    if callback is not None:
        callback._restore()


def raise_if_interrupted(trainer, run, checkpoint) -> None:
    """After trainer.train(): a signal stopped training early -> TrainingInterrupted naming the checkpoint."""
    callback = _callback(trainer)
    if callback is None or callback.signum is None or callback.step is None:
        return
    if callback.step >= trainer.state.max_steps:  # the signal came at the last step: the run is complete
        return
    name = signal.Signals(callback.signum).name
    if not callback.save:
        message = f"{name}: stopped at step {callback.step} (train.save_checkpoints is off, as in --smoke: no checkpoint kept)"
        raise TrainingInterrupted(message, callback.signum)
    where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint (none could be written)"
    raise TrainingInterrupted(
        f"{name}: training stopped at step {callback.step}; {where}",
        callback.signum,
        hint=f"continue with: tunesmith train {run.config_file} --resume",
    )
