"""fit and accuracy: a short run learns the digits, is reproducible, and early-stops on validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onnxcompress.models import digits, training, vision

FAST = {"lr": 1e-2, "batch_size": 32, "seed": 0, "threads": 1}


@pytest.fixture(scope="module")
def split():
    return digits.load_split(size=32, seed=0)


@pytest.fixture(scope="module")
def trained(split):
    """A digits student after three epochs, with its history."""
    student = vision.digits_student()
    history = training.fit(student, split.x_train, split.y_train, epochs=3, x_val=split.x_test, y_val=split.y_test, **FAST)
    return student, history


def test_short_fit_lowers_loss_and_learns_digits(trained, split):
    student, history = trained
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert training.accuracy(student, split.x_test, split.y_test) > 0.8
    assert not student.training


def test_history_tracks_validation_and_best_epoch(trained, split):
    student, history = trained
    assert len(history.val_loss) == len(history.val_accuracy) == 3
    assert history.best_epoch == int(np.argmin(history.val_loss))
    loss, acc = training.evaluate(student, split.x_test, split.y_test)
    assert loss == pytest.approx(min(history.val_loss), rel=1e-5)
    assert acc == pytest.approx(history.val_accuracy[history.best_epoch])


def test_fit_is_reproducible_by_seed(split):
    x, y = split.x_train[:256], split.y_train[:256]
    first, again = vision.digits_student(), vision.digits_student()
    h1 = training.fit(first, x, y, epochs=1, **FAST)
    h2 = training.fit(again, x, y, epochs=1, **FAST)
    assert h1.train_loss == h2.train_loss
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters()))


def test_patience_stops_when_validation_stops_improving(split):
    x, y = split.x_train[:128], split.y_train[:128]
    rng = np.random.default_rng(0)
    noise_labels = rng.integers(0, 10, size=64)  # unlearnable validation set: no lasting improvement
    history = training.fit(
        vision.digits_student(), x, y, epochs=30, x_val=split.x_test[:64], y_val=noise_labels, patience=2, **FAST
    )
    assert history.stopped_early
    assert len(history.train_loss) == history.best_epoch + 3


def test_custom_loss_is_used(split):
    calls = []

    def loss_fn(outputs, targets):
        calls.append(outputs.shape)
        return torch.nn.functional.cross_entropy(outputs, targets)

    training.fit(vision.digits_student(), split.x_train[:64], split.y_train[:64], epochs=1, loss_fn=loss_fn, **FAST)
    assert calls == [(32, 10), (32, 10)]


def test_fit_restores_thread_setting(split):
    before = torch.get_num_threads()
    training.fit(vision.digits_student(), split.x_train[:32], split.y_train[:32], epochs=1, lr=1e-3, batch_size=32, seed=0, threads=before + 1)
    assert torch.get_num_threads() == before
