"""Students built from the teacher copy the right layers and weights."""

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from onnxcompress.distill import students
from onnxcompress.errors import UsageError


@pytest.fixture(scope="module")
def tiny_bert():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=6, num_attention_heads=2, intermediate_size=32)
    return BertModel(config).eval()


def test_evenly_spaced_keeps_every_other_layer():
    assert students.evenly_spaced(6, 3) == [0, 2, 4]
    assert students.evenly_spaced(12, 4) == [0, 3, 6, 9]


def test_drop_layers_copies_the_chosen_teacher_layers(tiny_bert):
    student = students.drop_layers(tiny_bert, [1, 4, 5])
    assert len(student.encoder.layer) == 3 and student.config.num_hidden_layers == 3
    for s_layer, t_index in zip(student.encoder.layer, [1, 4, 5]):
        t_state = tiny_bert.encoder.layer[t_index].state_dict()
        for name, tensor in s_layer.state_dict().items():
            assert torch.equal(tensor, t_state[name]), name
    assert torch.equal(student.embeddings.word_embeddings.weight, tiny_bert.embeddings.word_embeddings.weight)
    assert len(tiny_bert.encoder.layer) == 6  # the teacher is untouched


def test_dropped_student_runs_and_differs_from_teacher(tiny_bert):
    student = students.drop_layers(tiny_bert, 2)
    ids = torch.tensor([[1, 5, 7, 2]])
    out_s, out_t = student(input_ids=ids).last_hidden_state, tiny_bert(input_ids=ids).last_hidden_state
    assert out_s.shape == out_t.shape and not torch.allclose(out_s, out_t)


def test_drop_layers_rejects_bad_indices(tiny_bert):
    with pytest.raises(UsageError, match="outside the teacher's 6 layers"):
        students.drop_layers(tiny_bert, [0, 9])
    with pytest.raises(UsageError, match="has no encoder layer list"):
        students.drop_layers(nn.Linear(2, 2), 1)


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 6, 3, padding=1, stride=2), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 3),
    ).eval()


def test_narrow_copy_keeps_the_strongest_filters_and_their_consumers():
    teacher = _cnn()
    student = students.narrow_copy(teacher, 0.5)
    conv1, conv2, fc = student[0], student[3], student[7]
    kept1 = teacher[0].weight.abs().flatten(1).sum(1).topk(4).indices.sort().values
    kept2 = teacher[3].weight.abs().flatten(1).sum(1).topk(3).indices.sort().values
    assert torch.equal(conv1.weight, teacher[0].weight[kept1])
    assert torch.equal(student[1].running_mean, teacher[1].running_mean[kept1])
    assert torch.equal(conv2.weight, teacher[3].weight[kept2][:, kept1])
    columns = (kept2.view(-1, 1) * 4 + torch.arange(4)).flatten()
    assert torch.equal(fc.weight, teacher[7].weight[:, columns])
    assert student(torch.randn(2, 1, 4, 4)).shape == (2, 3)


def test_narrow_copy_rejects_a_bad_ratio():
    with pytest.raises(UsageError, match=r"width ratio must be in \(0, 1\], not 1.5"):
        students.narrow_copy(_cnn(), 1.5)
