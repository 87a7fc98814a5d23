"""Each distillation loss against a value computed by hand (numpy / plain arithmetic)."""

import math

import numpy as np
import pytest
import torch

from onnxcompress.distill import losses


def _softmax(x, t=1.0):
    e = np.exp(np.asarray(x, dtype=np.float64) / t)
    return e / e.sum()


STUDENT = [[1.0, 2.0, 0.5]]
TEACHER = [[2.0, 1.0, 0.0]]


def test_soft_kl_is_teacher_to_student_kl_times_t_squared():
    p, q = _softmax(TEACHER[0], 2.0), _softmax(STUDENT[0], 2.0)
    expected = float(np.sum(p * np.log(p / q))) * 4.0
    got = losses.soft_kl(torch.tensor(STUDENT), torch.tensor(TEACHER), temperature=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_reverse_kl_swaps_the_distributions():
    p, q = _softmax(TEACHER[0]), _softmax(STUDENT[0])
    expected = float(np.sum(q * np.log(q / p)))
    got = losses.reverse_kl(torch.tensor(STUDENT), torch.tensor(TEACHER))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert got.item() != pytest.approx(losses.soft_kl(torch.tensor(STUDENT), torch.tensor(TEACHER), 1.0).item())


def test_hinton_loss_weighs_soft_and_weighted_cross_entropy():
    weights = torch.tensor([1.0, 3.0, 1.0])
    hard = -math.log(_softmax(STUDENT[0])[1])  # label 1, weight 3 (weighted mean over one sample = plain CE)
    p, q = _softmax(TEACHER[0], 2.0), _softmax(STUDENT[0], 2.0)
    soft = float(np.sum(p * np.log(p / q))) * 4.0
    got = losses.hinton_loss(
        torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor([1]), temperature=2.0, alpha=0.25, class_weights=weights
    )
    assert got.item() == pytest.approx(0.25 * soft + 0.75 * hard, rel=1e-5)


def test_class_weights_change_cross_entropy_over_a_batch():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0])
    l0, l1 = -math.log(_softmax([2.0, 0.0])[0]), -math.log(_softmax([0.0, 2.0])[0])
    plain = losses.hard_loss(logits, labels)
    assert plain.item() == pytest.approx((l0 + l1) / 2, rel=1e-5)
    weighted = losses.hard_loss(logits, torch.tensor([0, 1]), class_weights=torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx((1 * l0 + 3 * -math.log(_softmax([0.0, 2.0])[1])) / 4, rel=1e-5)


def test_bce_with_positive_class_weights():
    logit, target = 0.5, 1.0
    sig = 1 / (1 + math.exp(-logit))
    got = losses.hard_loss(torch.tensor([[logit]]), torch.tensor([[target]]), kind="bce", class_weights=torch.tensor([2.0]))
    assert got.item() == pytest.approx(-2.0 * math.log(sig), rel=1e-5)


def test_hinton_bce_soft_part_uses_sigmoid_targets():
    s, t, temp = 0.5, 2.0, 2.0
    pt = 1 / (1 + math.exp(-t / temp))
    ps = 1 / (1 + math.exp(-s / temp))
    soft = -(pt * math.log(ps) + (1 - pt) * math.log(1 - ps)) * temp**2
    got = losses.hinton_loss(torch.tensor([[s]]), torch.tensor([[t]]), None, temperature=temp, alpha=0.5, kind="bce")
    assert got.item() == pytest.approx(soft, rel=1e-5)


def test_embedding_losses_mse_and_cosine():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    assert losses.embedding_loss(a, b, "mse").item() == pytest.approx(0.5)
    assert losses.embedding_loss(a, b, "cosine").item() == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-6)


def test_hidden_loss_follows_the_layer_map_and_projects_widths():
    student = [torch.ones(1, 2), torch.zeros(1, 3)]
    teacher = [torch.full((1, 4), 2.0), torch.zeros(1, 4)]
    projection = torch.nn.Linear(2, 4, bias=False)
    torch.nn.init.constant_(projection.weight, 0.5)  # each output = 0.5 * (1 + 1) = 1
    got = losses.hidden_loss(student, teacher, {0: 0}, projections={0: projection})
    assert got.item() == pytest.approx(1.0)  # (1 - 2)^2
    conv_student, conv_teacher = torch.ones(1, 2, 3, 3), torch.zeros(1, 2, 3, 3)
    assert losses.hidden_loss([conv_student], [conv_teacher], {0: 0}).item() == pytest.approx(1.0)


def test_attribution_maps_of_a_linear_model_are_its_normalised_weights():
    model = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, -4.0, 0.0], [1.0, 1.0, 1.0]]))
    maps = losses.attribution_maps(model, torch.randn(1, 3), torch.tensor([0]), create_graph=False)
    assert torch.allclose(maps, torch.tensor([[0.6, 0.8, 0.0]]))
    assert losses.attribution_loss(maps, torch.tensor([[0.0, 1.0, 0.0]])).item() == pytest.approx(0.36 + 0.04)
