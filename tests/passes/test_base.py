"""The pass base class: a run's context, notes and details per run, data handed in, choices checked, options declared with help."""

from __future__ import annotations

import copy
import threading
from typing import Annotated, Literal

import onnx_ir as ir
import pytest

from onnxcompress.errors import UsageError
from onnxcompress.passes import REGISTRY, CompressionPass, PassOutcome
from onnxcompress.passes.base import OptionSpec, literal_choices, type_text

TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {
  y = Relu(x)
}
"""


class Echo(CompressionPass):
    """Note the data its run was handed (``times`` times) and count the nodes."""

    name = "test-base-echo"

    def __init__(
        self, mode: Annotated[Literal["a", "b"] | None, "a choice"] = "a", times: Annotated[int, "notes per run"] = 1,
    ) -> None:
        super().__init__()
        self.mode, self.times = mode, times
        self.check_choices()
        self.require(times >= 1, "times", "at least 1")

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for _ in range(self.times):
            self.note(f"calibration {self.context.calibration}, labelled {self.context.labelled}")
        self.context.details["nodes"] = len(model.graph)
        return ir.passes.PassResult(model, modified=False)


class NeedsData(Echo):
    """``Echo`` that cannot run without calibration data."""

    def calibration_need(self) -> str | None:
        return "it echoes it"


def test_apply_hands_data_to_one_run_and_returns_its_notes_and_details() -> None:
    pass_ = Echo(times=2)
    built = copy.deepcopy(vars(pass_))
    outcome = pass_.apply(ir.from_onnx_text(TEXT), calibration="A", labelled="L")
    assert isinstance(outcome, PassOutcome) and not outcome.modified
    assert outcome.notes == ["calibration A, labelled L"] * 2 and outcome.details == {"nodes": 1}
    again = pass_(ir.from_onnx_text(TEXT))
    assert again.notes == ["calibration None, labelled None"] * 2
    assert vars(pass_) == built


def test_the_context_exists_only_while_the_pass_runs() -> None:
    pass_ = Echo()
    with pytest.raises(RuntimeError, match="only while it runs"):
        _ = pass_.context
    pass_(ir.from_onnx_text(TEXT))
    with pytest.raises(RuntimeError, match="only while it runs"):
        pass_.note("late")


def test_runs_of_one_pass_in_two_threads_keep_their_own_data() -> None:
    pass_ = Echo()
    outcomes = {}

    def run(data: str) -> None:
        outcomes[data] = pass_.apply(ir.from_onnx_text(TEXT), calibration=data)

    threads = [threading.Thread(target=run, args=(data,)) for data in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {data: o.notes for data, o in outcomes.items()} == {"A": ["calibration A, labelled None"], "B": ["calibration B, labelled None"]}


def test_a_pass_needing_calibration_is_refused_before_it_runs() -> None:
    model = ir.from_onnx_text(TEXT)
    with pytest.raises(UsageError, match=r"^test-base-echo needs calibration data \(--calibration\): it echoes it$"):
        NeedsData()(model)
    assert NeedsData().apply(model, calibration="A").notes == ["calibration A, labelled None"]


def test_options_are_checked_when_built() -> None:
    with pytest.raises(UsageError, match=r"^test-base-echo: mode must be one of a, b, None, got 'c'$"):
        Echo(mode="c")
    with pytest.raises(UsageError, match=r"^test-base-echo: times must be at least 1, got 0$"):
        Echo(times=0)
    assert Echo(mode=None).options() == {"mode": None, "times": 1}


@pytest.mark.parametrize(("annotation", "choices"), [
    (Literal["a", "b"], ("a", "b")),
    (Literal["a"] | None, ("a", None)),
    (Literal["a"] | Literal["b"], ("a", "b")),
    (str, None),
    (int | None, None),
    (Literal["a"] | int, None),
])
def test_literal_choices(annotation, choices) -> None:
    assert literal_choices(annotation) == choices


def test_option_specs_read_type_default_choices_and_help_from_the_signature() -> None:
    mode, times = Echo.option_specs().values()
    assert mode == OptionSpec("mode", Literal["a", "b"] | None, "a", "a choice") and mode.choices == ("a", "b", None)
    assert times == OptionSpec("times", int, 1, "notes per run") and times.choices is None
    assert mode.describe() == "mode='a' (a|b|none)" and type_text(mode.annotation, values=False) == "str|none"


def test_every_registered_pass_option_has_one_line_of_help() -> None:
    for name, cls in REGISTRY.items():
        for option in cls.option_specs().values():
            assert option.help.strip() and "\n" not in option.help, f"{name}:{option.name}"


def test_a_registered_pass_with_an_option_lacking_one_line_of_help_is_refused_when_defined() -> None:
    with pytest.raises(RuntimeError, match=r"^pass 'test-base-unexplained' \(tests\.passes\.test_base\.Unexplained\): no one-line help for option plain, split;"):
        class Unexplained(CompressionPass):
            """One option with help, one without and one with two lines."""

            name = "test-base-unexplained"

            def __init__(self, told: Annotated[int, "a count"] = 1, plain: int = 2, split: Annotated[int, "two\nlines"] = 3) -> None:
                super().__init__()

    assert "test-base-unexplained" not in REGISTRY


def test_a_base_class_without_a_name_is_not_registered_and_needs_no_help() -> None:
    class Base(CompressionPass):
        """Options its registered subclasses declare again, with help."""

        def __init__(self, *, plain: int) -> None:
            super().__init__()

    assert Base not in REGISTRY.values() and Base.option_specs()["plain"].help == ""


def test_no_shipped_pass_keeps_state_between_runs():
    """A pass object holds its options only: no method but ``__init__`` assigns to ``self`` (what one run
    needs or reports lives in its context), so running it again cannot see the last run."""
    import ast
    import inspect
    import textwrap

    from onnxcompress.passes import REGISTRY

    writes = []
    for name, cls in REGISTRY.items():
        if not cls.__module__.startswith("onnxcompress.passes."):
            continue
        for klass in [k for k in cls.__mro__ if k.__module__.startswith("onnxcompress.passes.") and k is not CompressionPass]:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
            for method in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name != "__init__"]:
                for node in ast.walk(method):
                    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                    writes += [f"{name}: {klass.__name__}.{method.name} sets self.{t.attr}" for t in targets
                               if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"]
    assert writes == []


class Annotate(CompressionPass):
    """Infer types and shapes onto every value, as passes do for their own analysis, and change nothing else."""

    name = "test-base-annotate"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        for value in (v for node in model.graph for v in node.outputs):
            value.type, value.shape = ir.TensorType(ir.DataType.FLOAT), ir.Shape(["N", 4])
        return ir.passes.PassResult(model, modified=False)


def test_types_and_shapes_a_pass_added_are_dropped_and_those_the_model_had_kept() -> None:
    text = TEXT.replace("y = Relu(x)", "h = Relu(x)\n  y = Neg(h)")
    model = ir.from_onnx_text(text)
    before = ir.to_proto(model).SerializeToString()
    Annotate()(model)
    assert ir.to_proto(model).SerializeToString() == before  # not even a type-only value_info entry is left
    model = ir.from_onnx_text(text.replace("=> (float[N, 4] y)", "=> (float[N, 4] y) <float h>"))
    Annotate()(model)
    h = model.graph.node(0).outputs[0]
    assert h.type == ir.TensorType(ir.DataType.FLOAT) and h.shape == ir.Shape(["N", 4])  # annotated before: kept
