"""``exclude``: patterns match current and pre-fusion names, the run notes what was excluded, a pattern
excluding nothing is a one-line error naming the closest names."""

from __future__ import annotations

import pytest

from onnxcompress import io
from onnxcompress.cli import main
from onnxcompress.errors import UsageError
from onnxcompress.passes import Fuse, PruneChannels
from onnxcompress.passes.exclude import SHOWN, Candidate, node_candidates, of_type, resolve


def test_patterns_match_names_from_before_fuse(exported_chain) -> None:
    model = exported_chain()
    Fuse()(model)
    candidates = node_candidates(model, of_type("Conv", "Gemm"))
    assert resolve("quantize-static", ["/fc/Add", "/stem/stem.1/*"], candidates) == ["/fc/MatMul", "/stem/stem.0/Conv"]


def test_a_pattern_matching_no_name_names_the_closest(exported_chain) -> None:
    candidates = node_candidates(exported_chain(), of_type("Conv"))
    with pytest.raises(UsageError, match=r"^quantize-static: exclude pattern '/stem/stem.0/Cnv' matches no name; similar: /stem/stem.0/Conv"):
        resolve("quantize-static", ["/stem/stem.0/Cnv"], candidates)


def test_a_pattern_matching_only_nodes_the_pass_leaves_alone_is_an_error(exported_chain) -> None:
    """The issue's case: ``/stem/*`` matched a Relu while the stem's Conv (renamed) was quantized."""
    candidates = node_candidates(exported_chain(), of_type("Conv", "MatMul"))
    with pytest.raises(UsageError, match="matches only Relu nodes, which smooth leaves alone anyway"):
        resolve("smooth", ["/stem/stem.2/*"], candidates)


def test_prune_channels_notes_what_it_excluded_and_refuses_a_pattern_matching_nothing(exported_chain) -> None:
    outcome = PruneChannels(ratio=0.5, exclude=["/stem/stem.0/Conv"])(exported_chain())
    assert outcome.notes[0] == "excluded 1 name: /stem/stem.0/Conv"
    with pytest.raises(UsageError, match="prune-channels: exclude pattern 'w9' matches no name"):
        PruneChannels(ratio=0.5, exclude=["w9"])(exported_chain())


def test_the_note_is_cut_after_a_few_names(exported_chain) -> None:
    many = [Candidate(f"n{i}", (f"n{i}",), "Conv", True) for i in range(SHOWN + 3)]
    assert len(resolve("smooth", ["n*"], many)) == SHOWN + 3
    outcome = PruneChannels(ratio=0.5, exclude=["*"])(exported_chain())
    assert outcome.notes[0].startswith("excluded 14 names: ") and outcome.notes[0].endswith(", and 9 more")


def test_run_exits_2_naming_similar_names(exported_chain, tmp_path, capsys) -> None:
    model = exported_chain()
    Fuse()(model)
    path = io.save(model, tmp_path / "fused.onnx")
    code = main(["run", str(path), "-o", str(tmp_path / "out.onnx"), "--no-bench", "-p", "quantize-dynamic:exclude=/fc/MatMull"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert "exclude pattern '/fc/MatMull' matches no name; similar: /fc/MatMul" in err[-1]
