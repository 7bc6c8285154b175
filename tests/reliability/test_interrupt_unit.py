"""The interrupt callback's contract without a training run: flag -> save + stop; handlers always restored."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
from transformers import TrainerControl

from tunesmith.train.interrupt import InterruptCallback, restore_signal_handlers


def test_signal_asks_for_a_checkpoint_and_a_stop_at_the_step_end():
    callback, control = InterruptCallback(), TrainerControl()
    before = signal.getsignal(signal.SIGTERM)
    callback.on_train_begin(None, None, control)
    try:
        assert signal.getsignal(signal.SIGTERM) == callback._handle
        callback._handle(signal.SIGTERM, None)
        callback.on_step_end(None, SimpleNamespace(global_step=7), control)
        assert control.should_save and control.should_training_stop and callback.step == 7
        with pytest.raises(KeyboardInterrupt):  # a second signal stops at once
            callback._handle(signal.SIGTERM, None)
    finally:
        callback._restore()
    assert signal.getsignal(signal.SIGTERM) == before


def test_handlers_are_restored_when_training_raised():
    callback = InterruptCallback()
    before = signal.getsignal(signal.SIGINT)
    callback.on_train_begin(None, None, TrainerControl())  # on_train_end will never run: training "raised"
    restore_signal_handlers(SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[callback])))
    assert signal.getsignal(signal.SIGINT) == before
