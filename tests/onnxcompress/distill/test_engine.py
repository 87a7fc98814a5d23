"""A tiny distillation run lowers the loss, keeps metrics, stops early; bad input is a one-line error."""

import numpy as np
import pytest
import torch
from torch import nn

from onnxcompress.distill import distill, multi_stage
from onnxcompress.errors import UsageError


def _mlp(hidden: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 3))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8)).astype(np.float32)
    teacher = _mlp(64, seed=1).eval()
    with torch.no_grad():
        y = teacher(torch.from_numpy(x)).argmax(1).numpy()
    return teacher, x, y


@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        ("standard", {"temperature": 2.0, "alpha": 0.5}),
        ("reverse_kld", {}),
        ("hidden", {"student_layers": ["1"], "teacher_layers": ["1"], "hidden_kind": "cosine"}),
        ("attribution", {"attribution_weight": 1.0}),
    ],
)
def test_every_strategy_lowers_the_training_loss(data, strategy, options):
    teacher, x, y = data
    result = distill(teacher, _mlp(8, seed=2), (x, y), strategy=strategy, epochs=6, lr=1e-2, batch_size=32, **options)
    losses = [m.train_loss for m in result.history]
    assert len(losses) == 6 and losses[-1] < losses[0]


def test_embedding_task_without_labels_and_validation_metrics(data):
    teacher, x, y = data
    result = distill(teacher, _mlp(8, seed=2), (x, None), kind="cosine", epochs=4, lr=1e-2, val=(x[:32], None))
    assert result.history[-1].val_loss < result.history[0].val_loss
    assert result.history[0].val_accuracy is None


def test_early_stopping_restores_the_best_epoch(data):
    teacher, x, y = data
    # lr so large that training diverges after the first epochs: validation stops improving
    result = distill(teacher, _mlp(8, seed=2), (x, y), epochs=30, lr=5.0, val=(x[:32], y[:32]), patience=2)
    assert len(result.history) < 30
    assert result.best_epoch == min(range(len(result.history)), key=lambda i: result.history[i].val_loss) + 1
    assert 0.0 <= result.history[0].val_accuracy <= 1.0


def test_fixed_seed_reproduces_the_run(data):
    teacher, x, y = data
    runs = [distill(teacher, _mlp(8, seed=2), (x, y), epochs=2, seed=3).history[-1].train_loss for _ in range(2)]
    assert runs[0] == runs[1]


def test_multi_stage_goes_through_the_assistant(data):
    teacher, x, y = data
    first, second = multi_stage(teacher, _mlp(24, seed=4), _mlp(8, seed=2), (x, y), epochs=3, lr=1e-2)
    assert first.history[-1].train_loss < first.history[0].train_loss
    assert second.history[-1].train_loss < second.history[0].train_loss


def test_student_with_another_output_shape_is_refused(data):
    teacher, x, y = data
    wrong = nn.Sequential(nn.Linear(8, 4))
    with pytest.raises(UsageError, match=r"^student output shape \(2, 4\) does not match the teacher's \(2, 3\)$"):
        distill(teacher, wrong, (x, y), epochs=1)


def test_empty_dataset_is_refused(data):
    teacher, _, _ = data
    with pytest.raises(UsageError, match="^the distillation dataset is empty$"):
        distill(teacher, _mlp(8, seed=2), (np.zeros((0, 8), np.float32), np.zeros(0, np.int64)), epochs=1)


def test_unknown_strategy_and_option_are_refused(data):
    teacher, x, y = data
    with pytest.raises(UsageError, match="unknown distillation strategy 'magic'; available: standard, hidden"):
        distill(teacher, _mlp(8, seed=2), (x, y), strategy="magic")
    with pytest.raises(UsageError, match="no layer named 'nope'"):
        distill(teacher, _mlp(8, seed=2), (x, y), strategy="hidden", student_layers=["nope"], teacher_layers=["1"])


class _CountingTeacher(nn.Module):
    """The fixture's teacher, counting the rows it is run on."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher, self.rows = teacher, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.teacher(x)


def test_teacher_outputs_too_large_to_hold_are_recomputed_every_batch(data, monkeypatch):
    teacher, x, y = data
    cached, recomputed = _CountingTeacher(teacher), _CountingTeacher(teacher)
    val = (x[:16], y[:16])
    held = distill(cached, _mlp(8, seed=2), (x, y), epochs=3, seed=3, val=val).history[-1]
    monkeypatch.setattr("onnxcompress.distill.engine.TEACHER_CACHE_SHARE", 0.0)
    fresh = distill(recomputed, _mlp(8, seed=2), (x, y), epochs=3, seed=3, val=val).history[-1]
    assert cached.rows < 2 * (len(x) + 16)  # once (plus the shape probe), early-stopping rows included
    assert recomputed.rows >= 3 * (len(x) + 16)  # training and early-stopping rows, every epoch
    assert (fresh.train_loss, fresh.val_loss) == pytest.approx((held.train_loss, held.val_loss), rel=1e-5)


def test_teacher_outputs_that_fit_only_in_bfloat16_are_held_in_it(data, monkeypatch):
    from onnxcompress.distill import engine

    teacher, x, y = data
    full = distill(_CountingTeacher(teacher), _mlp(8, seed=2), (x, y), epochs=3, seed=3).history[-1].train_loss
    probe = teacher(torch.as_tensor(x[:2]))
    float32_bytes = probe[0].numel() * 4 * len(x)
    monkeypatch.setattr(engine, "physical_memory", lambda: int(float32_bytes * 3 * 0.75))  # a third of it: 3/4 of float32's
    assert engine.held_dtype(probe, len(x)) == torch.bfloat16
    counted = _CountingTeacher(teacher)
    half = distill(counted, _mlp(8, seed=2), (x, y), epochs=3, seed=3).history[-1].train_loss
    assert counted.rows < 2 * len(x)  # held once, not recomputed
    assert half == pytest.approx(full, rel=1e-2) and half != full  # bfloat16 targets: 3 significant digits


def test_batches_drawn_by_length_hold_samples_of_similar_length_and_cover_each_once():
    from onnxcompress.distill.engine import BatchOrder

    lengths = torch.from_numpy(np.random.default_rng(0).integers(3, 33, 640))
    batches = BatchOrder(640, 32, torch.Generator().manual_seed(0), lengths).epoch()
    assert sorted(torch.cat(batches).tolist()) == list(range(640))
    spread = np.mean([float(lengths[b].max() - lengths[b].min()) for b in batches])
    shuffled = np.mean([float(lengths[b].max() - lengths[b].min()) for b in BatchOrder(640, 32, torch.Generator().manual_seed(0)).epoch()])
    assert spread < 5 < 25 < shuffled  # all 640 sorted together: a batch spans about 1.5 of the 30 lengths, ~29 at random
    first, second = BatchOrder(640, 32, torch.Generator().manual_seed(0), lengths), BatchOrder(640, 32, torch.Generator().manual_seed(0), lengths)
    assert all(torch.equal(a, b) for a, b in zip(first.epoch(), second.epoch()))  # seeded
