"""Hardening table: every corpus model (``onnxcompress.models.hardening``) through every pass, run the
way a stranger runs it, through the ``onnxcompress`` command line.

For each model: calibration (``calibration.npz``) and held-out (``held-out.npz``) samples are written
from the entry's own inputs, and ``check.npz`` (two held-out samples) for the pipeline's checks;
``onnxcompress recommend --calibration calibration.npz`` is asked for the chain it proves on that data. Then every chain (each single pass, then the
recommended chain) runs as ``onnxcompress run MODEL -o OUT -p ... --calibration calibration.npz
--inputs check.npz --no-bench --report DIR`` in a subprocess with a timeout, and is recorded as:

- ``ok``: exit 0; the output's task fidelity against the input model on the held-out samples
  (the entry's own measure, plus the worst whole-output cosine beside it), parameters before and
  after, and its latency ratio to the input measured side by side (``onnxcompress bench IN OUT --json``,
  dynamic dims pinned to a held-out sample's shape);
- ``declined``: a one-line refusal: a usage error (exit 2), or a lossy pass that would break its
  fidelity budget and says so (exit 1, the message starts with the pass's name); the reason is kept;
- ``failed``: anything else: an exact pass that changed the outputs (exit 1), an unexpected error, a
  crash, a timeout, an output ONNX Runtime cannot run; the first line of the message is kept.

    python tools/hardening_table.py [--only captcha-crnn,yolo-head-legacy] [--timeout 600] [--rounds 5] [--bench-recommended-only]

``--only`` re-runs those models and keeps the others' results from the last run; results are written
after every model, so an interrupted run keeps what it measured. ``--redraw`` runs nothing: it
re-classifies the stored cells and rewrites both files. Writes tools/results/hardening.json
and docs/benchmarks/hardening.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from onnxcompress import fidelity as tensor_fidelity
from onnxcompress import io, runtime, stats
from onnxcompress.cpu import cpu_model_name
from onnxcompress.markdown import table as markdown_table
from onnxcompress.models.hardening import ENTRIES, Entry

ROOT = Path(__file__).resolve().parents[1]
JSON_OUT = ROOT / "tools" / "results" / "hardening.json"
DOC_OUT = ROOT / "docs" / "benchmarks" / "hardening.md"
WORK = Path.home() / ".cache" / "onnxcompress-hardening" / "table"
CHAINS = (
    "fold-constants", "cleanup", "fuse", "fuse:opset=23", "prune-channels:ratio=0.3", "split-outliers",
    "smooth", "scale-tokens", "quantize-dynamic", "quantize-static",
)
RECOMMEND = "recommend"
NO_STEP = "no step kept"  # what recommend prints when its proof keeps nothing
CHECK_SAMPLES = 2
PRUNE_PARAMS = re.compile(r"^prune-channels: params ([\d,]+) -> ([\d,]+)")
PRUNE_DECLINED = "prune-channels: declined:"  # the removal would have grown the model, which was left unchanged
USAGE_EXIT, CHECK_EXIT = 2, 1
CRASH_MARKERS = ("ONNXCOMPRESS_DEBUG", "Traceback", "internal error", "cannot load the model", "failed to run the model")


def cli() -> list[str]:
    """The installed ``onnxcompress`` console script, as a stranger runs it."""
    script = shutil.which("onnxcompress") or str(Path(sys.executable).with_name("onnxcompress"))
    if not Path(script).exists():
        raise SystemExit('the onnxcompress command is not installed: pip install -e ".[dev]"')
    return [script]


def invoke(args: list[str], timeout: float) -> tuple[int | None, str, float]:
    """Run ``onnxcompress ARGS``: (exit code or None on timeout, stdout + stderr, seconds)."""
    start = time.perf_counter()
    try:
        done = subprocess.run([*cli(), *args], capture_output=True, text=True, timeout=timeout, env=_env())
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s", time.perf_counter() - start
    return done.returncode, (done.stdout or "") + (done.stderr or ""), time.perf_counter() - start


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("ONNXCOMPRESS_DEBUG", None)
    env["COLUMNS"] = "400"  # rich wraps at the terminal's width; keep every message on one line
    return env


def user_message(text: str) -> str:
    """The message a user reads first: the ``error:`` line, else the last non-empty line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors[0] if errors else lines[-1] if lines else "").removeprefix("error: ")[:300]


def prepare(entry: Entry, folder: Path) -> dict:
    """Model path, data files, reference outputs on the held-out samples, parameters and pinned shapes."""
    folder.mkdir(parents=True, exist_ok=True)
    model = entry.model()
    calibration = entry.feeds("calibration", entry.samples["calibration"])
    held_out = entry.feeds("held-out", entry.samples["held-out"])
    io.save_arrays(folder / "calibration.npz", calibration)
    io.save_arrays(folder / "held-out.npz", held_out)
    io.save_arrays(folder / "check.npz", {name: array[:CHECK_SAMPLES] for name, array in held_out.items()})
    return {
        "model": model,
        "held_out": held_out,
        "reference": runtime.run(io.load(model), held_out),
        "params": stats.model_stats(io.load(model)).params,
        "shapes": [f"{name}:{','.join(map(str, (1, *array.shape[1:])))}" for name, array in held_out.items()],
    }


def recommended_chain(model: Path, calibration: Path, timeout: float) -> tuple[list[str] | None, str]:
    """The ``-p`` specs of the command ``onnxcompress recommend`` prints when given the calibration data
    to prove its chain on ([] when its proof kept no step), or None and why not."""
    code, text, _ = invoke(["recommend", str(model), "--calibration", str(calibration)], timeout)
    command = next((line.strip() for line in text.splitlines() if line.strip().startswith("onnxcompress run ")), None)
    if code == 0 and NO_STEP in text:
        return [], NO_STEP
    if code != 0 or command is None:
        return None, user_message(text) or f"exit {code}"
    words = shlex.split(command)
    return [words[i + 1] for i, word in enumerate(words[:-1]) if word == "-p"], command


def run_chain(entry: Entry, prepared: dict, specs: list[str], folder: Path, timeout: float, rounds: int) -> dict:
    """One ``onnxcompress run`` of ``specs`` on the entry's model, classified and measured."""
    folder.mkdir(parents=True, exist_ok=True)
    output, report = folder / "out.onnx", folder / "report"
    output.unlink(missing_ok=True)
    shutil.rmtree(report, ignore_errors=True)
    args = ["run", str(prepared["model"]), "-o", str(output), *[w for s in specs for w in ("-p", s)],
            "--calibration", str(folder.parent / "calibration.npz"), "--inputs", str(folder.parent / "check.npz"),
            "--no-bench", "--report", str(report)]
    code, text, seconds = invoke(args, timeout)
    cell = {"chain": specs, "exit": code, "seconds": round(seconds, 1), "notes": _notes(report)}
    if code != 0 or not output.is_file():
        cell = {**cell, "message": user_message(text) or f"exit {code}", "crashed": any(m in text for m in CRASH_MARKERS)}
        return {**cell, "status": refusal_status(cell)}
    return {**cell, **measure(entry, prepared, output, timeout, rounds)}


def refusal_status(cell: dict) -> str:
    """``declined`` for a one-line usage error or a lossy pass refusing to break its budget, else ``failed``."""
    from onnxcompress.passes.base import REGISTRY

    if cell.get("crashed") or cell["exit"] not in (USAGE_EXIT, CHECK_EXIT):
        return "failed"
    if cell["exit"] == USAGE_EXIT:
        return "declined"
    named = cell["message"].split(":", 1)[0].strip()
    return "declined" if named in REGISTRY and not REGISTRY[named].exact else "failed"


def _notes(report: Path) -> list[str]:
    try:
        steps = json.loads((report / "report.json").read_text())["steps"]
    except (OSError, ValueError, KeyError):
        return []
    return [f"{step['pass']}: {note}" for step in steps[1:] for note in step.get("notes", [])] + [
        f"{step['pass']}: rolled back" for step in steps[1:] if step.get("status") == "rolled back"
    ]


def measure(entry: Entry, prepared: dict, output: Path, timeout: float, rounds: int) -> dict:
    """Task fidelity, parameters and latency ratio of a written output."""
    try:
        candidate = io.load(output)
        outputs = runtime.run(candidate, prepared["held_out"])
    except Exception as exc:  # the CLI said ok but the file does not load or run: that is a failure
        return {"status": "failed", "message": f"output does not run: {user_message(str(exc))}"}
    task = entry.fidelity(prepared["held_out"], prepared["reference"], outputs)
    cosine = tensor_fidelity.compare(prepared["reference"], outputs).cosine
    return {
        "status": "ok",
        "fidelity": {**task.to_dict(), "cosine": cosine},
        "params": [prepared["params"], stats.model_stats(candidate).params],
        "latency_ratio": latency_ratio(prepared, output, timeout, rounds) if rounds > 0 else "not measured",
    }


def latency_ratio(prepared: dict, output: Path, timeout: float, rounds: int) -> float | str:
    """``onnxcompress bench IN OUT --json``'s ratio, or the first line of why it could not measure."""
    result = output.with_suffix(".bench.json")
    pins = [w for shape in prepared["shapes"] for w in ("--input-shape", shape)]
    code, text, _ = invoke(["bench", str(prepared["model"]), str(output), "--rounds", str(rounds), *pins, "--json", str(result)], timeout)
    if code != 0 or not result.is_file():
        return f"bench failed: {user_message(text)}"
    return round(json.loads(result.read_text())[1]["ratio"], 3)


def table_row(entry: Entry, timeout: float, rounds: int, single_pass_rounds: int) -> dict:
    """Every chain on one entry; single passes benched in ``single_pass_rounds``, the recommended chain in ``rounds``."""
    folder = WORK / entry.name
    start = time.perf_counter()
    try:
        prepared = prepare(entry, folder)
    except Exception as exc:
        return {"source": entry.source, "error": f"cannot build or run the reference: {type(exc).__name__}: {user_message(str(exc))}"}
    row = {"source": entry.source, "params": prepared["params"], "samples": dict(entry.samples), "cells": {}}
    for spec in CHAINS:
        row["cells"][spec] = run_chain(entry, prepared, [spec], folder / "run", timeout, single_pass_rounds)
        print(f"  {entry.name} {spec}: {_cell_text(row['cells'][spec])}", flush=True)
    row["cells"][RECOMMEND] = recommend_cell(entry, prepared, folder, timeout, rounds)
    row["seconds"] = round(time.perf_counter() - start, 1)
    row["commit"] = metadata()["commit"]
    row["bench_rounds"] = rounds
    row["single_pass_bench_rounds"] = single_pass_rounds
    return row


def recommend_cell(entry: Entry, prepared: dict, folder: Path, timeout: float, rounds: int) -> dict:
    """The chain ``recommend`` proves on the entry, run and benched in ``rounds``; declined when it kept no step."""
    chain, command = recommended_chain(prepared["model"], folder / "calibration.npz", timeout)
    if chain is None:
        cell = {"status": "failed", "chain": [], "message": f"recommend: {command}"}
    elif not chain:  # its proof kept no step: an answer, not a failure
        cell = {"status": "declined", "chain": [], "message": f"recommend: {command}"}
    else:
        cell = run_chain(entry, prepared, chain, folder / "run", timeout, rounds)
    print(f"  {entry.name} recommend: {_cell_text(cell)}", flush=True)
    return cell


def recommend_again(entry: Entry, row: dict, timeout: float, rounds: int) -> dict:
    """``row`` with only its recommend cell measured again (and the commit it was measured at)."""
    folder = WORK / entry.name
    prepared = prepare(entry, folder)
    cell = recommend_cell(entry, prepared, folder, timeout, rounds)
    return {**row, "cells": {**row["cells"], RECOMMEND: cell}, "recommend_commit": metadata()["commit"], "bench_rounds": rounds}


def _cell_text(cell: dict) -> str:
    """A table cell: ``ok 0.98 x0.71`` (``ok 0.98`` where latency was not measured), ``declined: ...`` or ``FAILED: ...``."""
    if cell["status"] == "ok":
        ratio = cell["latency_ratio"]
        latency = f" x{ratio:.2f}" if isinstance(ratio, float) else " (bench failed)" if ratio.startswith("bench failed") else ""
        grown = " GREW" if pruned_and_grew(cell) else ""
        return f"ok {cell['fidelity']['score']:.2f}{latency}{grown}"
    return f"{'declined' if cell['status'] == 'declined' else 'FAILED'}: {_short(cell['message'])}"


def pruned_and_grew(cell: dict) -> bool:
    """A pruning step whose output has more parameters than its input, read from the step's own note
    (``params A -> B``) or, for a prune-only chain, from the output (folding and quantization may add
    constants; pruning must never add parameters). A step that declined its removal for that left the model as it was."""
    if any(note.startswith(PRUNE_DECLINED) for note in cell.get("notes", [])):
        return False
    for note in cell.get("notes", []):
        match = PRUNE_PARAMS.search(note)
        if match:
            before, after = (int(group.replace(",", "")) for group in match.groups())
            return after > before
    return all(spec.startswith("prune") for spec in cell["chain"]) and cell["params"][1] > cell["params"][0]


def _short(message: str, limit: int = 70) -> str:
    message = re.sub(r"\s+", " ", message).replace("|", "/")
    return message if len(message) <= limit else message[: limit - 1] + "…"


def summary(results: dict) -> dict:
    """Counts per chain, the distinct failures with the models they hit, the silent losses, grown pruned models and
    recommended chains that read slower than their input."""
    counts: dict[str, Counter] = {spec: Counter() for spec in (*CHAINS, RECOMMEND)}
    failures: dict[str, list[str]] = {}
    silent: list[str] = []
    grew: list[str] = []
    slower: list[str] = []
    for name, row in results.items():
        for spec, cell in row.get("cells", {}).items():
            counts[spec][cell["status"]] += 1
            if cell["status"] == "failed":
                failures.setdefault(cell["message"], []).append(f"{name} / {spec}")
            elif cell["status"] == "ok":
                if cell["fidelity"]["score"] < 0.9:
                    silent.append(f"{name} / {spec}: {cell['fidelity']['score']:.2f} (cosine {cell['fidelity']['cosine']:.4f})")
                if pruned_and_grew(cell):
                    grew.append(f"{name} / {spec}: {cell['params'][0]:,} -> {cell['params'][1]:,}")
                if spec == RECOMMEND and isinstance(cell["latency_ratio"], float) and cell["latency_ratio"] > 1.0:
                    slower.append(f"{name}: x{cell['latency_ratio']:.2f} ({' '.join(cell['chain'])})")
    return {"counts": {k: dict(v) for k, v in counts.items()}, "failures": failures, "silent_losses": silent, "params_grew": grew,
            "recommended_slower": slower}


def _benched_cells(row: dict) -> str:
    """``, recommended chain only`` when the row's single passes were not benched."""
    return ", recommended chain only" if row.get("single_pass_bench_rounds", row["bench_rounds"]) == 0 else ""


def write_doc(results: dict, meta: dict) -> None:
    """docs/benchmarks/hardening.md: the table, the counts, the failures, the losses."""
    summed = summary(results)
    commits: dict[str, list[str]] = {}
    for name, row in results.items():
        commits.setdefault(row.get("commit", meta["commit"]), []).append(name)
    made_at = f"at commit `{next(iter(commits))}`" if len(commits) == 1 else "at the commits listed under the table"
    header = ["model", *CHAINS, RECOMMEND]
    lines = [
        "# Hardening corpus: every pass on models no one on the team wrote",
        "",
        f"Written by `tools/hardening_table.py` {made_at} ({meta['date']}, {meta['cpu']}, "
        f"onnxruntime {meta['onnxruntime']}, torch {meta['torch']}). "
        "Each cell is one `onnxcompress run MODEL -o OUT -p CHAIN --calibration calibration.npz --inputs check.npz --no-bench` "
        "as a stranger runs it: `ok SCORE xRATIO` (task fidelity against the input model on held-out samples, 1.00 = same "
        "answers; latency ratio to the input from `onnxcompress bench`, where measured: below 1 is faster), `declined: reason` (exit 2, one line) or "
        "`FAILED: first line` (an exact pass that changed the outputs, an unexpected error, a timeout, or an output "
        "ONNX Runtime cannot run); a lossy pass that refuses to break its fidelity budget (exit 1, one line) counts as declined. "
        "`GREW` marks a pruned output with more parameters than its input. Latency ratios were measured while "
        "other work shared the 2 cores: read them as rough. The models, their inputs and their task "
        "measures are in `models/hardening/` (`onnxcompress.models.hardening`); the full records, with notes, "
        "cosines and parameter counts, in `tools/results/hardening.json`. An encoder's score is retrieval (each "
        "held-out sample's new embedding finds the input model's embedding of the same sample as the closest of all "
        "of them) and mean cosine; nearest-neighbour agreement is recorded beside them but not scored, because on "
        "an encoder whose embeddings of different inputs agree to a cosine of 0.99998 (the randomly initialised "
        "Whisper encoder) it measures rounding noise (see `fidelity.embeddings`).",
        "",
    ]
    lines += markdown_table(header, ([name, _short(row["error"]), *[""] * (len(header) - 2)] if "error" in row else
                                     [name, *(_cell_text(row["cells"][s]) if s in row["cells"] else "" for s in header[1:])]
                                     for name, row in results.items()))
    if len(commits) > 1:
        lines += ["", "Rows were measured at different commits while the passes were being changed:", ""]
        lines += [f"- `{commit}`: {', '.join(names)}" for commit, names in commits.items()]
    again: dict[str, list[str]] = {}
    for name, row in results.items():
        if "recommend_commit" in row:
            again.setdefault(row["recommend_commit"], []).append(name)
    lines += [f"\nThe recommend column was measured again at `{commit}` for: {', '.join(names)}." for commit, names in again.items()]
    benched = [f"{name} ({row['bench_rounds']} rounds{_benched_cells(row)})" for name, row in results.items() if row.get("bench_rounds", 1) > 0]
    lines += ["", f"Latency was measured for: {', '.join(benched) or 'none'}; the other ok cells show fidelity only."]
    missing = [name for name in ENTRIES if name not in results]
    if missing:
        lines += ["", f"Not in this table (no result on the current passes yet): {', '.join(missing)}."]
    lines += ["", "## Counts", "", *markdown_table(["chain", "ok", "declined", "failed"], (
        [spec, c.get("ok", 0), c.get("declined", 0), c.get("failed", 0)] for spec, c in summed["counts"].items()))]
    lines += ["", "## Distinct failures", ""]
    lines += [f"- `{_short(message, 200)}`: {', '.join(where)}" for message, where in summed["failures"].items()] or ["- none"]
    lines += ["", "## Exit 0 with task fidelity below 0.9", ""] + ([f"- {line}" for line in summed["silent_losses"]] or ["- none"])
    lines += ["", "## Pruned outputs with more parameters than their input", ""] + ([f"- {line}" for line in summed["params_grew"]] or ["- none"])
    lines += ["", "## Recommended chains slower than their input", ""] + ([f"- {line}" for line in summed["recommended_slower"]] or ["- none"])
    lines += ["", "## Recommended chains", ""]
    lines += [f"- {name}: " + (f"`{' '.join(chain)}`" if chain else f"none ({NO_STEP})")
              for name, row in results.items() if RECOMMEND in row.get("cells", {}) for chain in [row["cells"][RECOMMEND]["chain"]]]
    lines += ["", "## Also covered elsewhere", "",
              "The onnx wheel's zoo models (`onnx/backend/test/data/light`: nine IR 3 / opset 9 architectures) go through "
              "`fold-constants, cleanup, fuse` in `tests/passes/test_exact_real_models.py` and both quantizers in "
              "`tests/passes/quantization/test_zoo_models.py`; its node tests (`collect_testcases()`) through the exact "
              "passes in `tests/passes/test_node_corpus.py`. They are not repeated here.", ""]
    DOC_OUT.write_text("\n".join(lines))


def metadata() -> dict:
    """Commit, date, CPU and package versions of this run."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    own_files = [f":!{path.relative_to(ROOT)}" for path in (JSON_OUT, DOC_OUT)]  # this run rewrites them after every model
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *own_files],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = cpu_model_name()
    import onnxruntime
    import torch

    return {
        "commit": commit + ("+uncommitted changes" if dirty else ""),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated entry names; the others keep their last results")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per command")
    parser.add_argument("--rounds", type=int, default=5, help="bench rounds per ok cell (0: no latency)")
    parser.add_argument("--bench-recommended-only", action="store_true",
                        help="bench only the recommended chain (its claim is 'not slower than the input'), not each single pass")
    parser.add_argument("--recommend-only", action="store_true",
                        help="measure only the recommend column again (with --only), keeping each row's other cells")
    parser.add_argument("--redraw", action="store_true", help="re-classify the stored cells and rewrite the files; run nothing")
    args = parser.parse_args()
    if args.redraw:
        return redraw()
    names = args.only.split(",") if args.only else list(ENTRIES)
    unknown = set(names) - set(ENTRIES)
    if unknown:
        raise SystemExit(f"unknown entries {sorted(unknown)}; known: {', '.join(ENTRIES)}")
    previous = json.loads(JSON_OUT.read_text())["results"] if args.only and JSON_OUT.is_file() else {}
    results = {name: previous[name] for name in ENTRIES if name in previous}
    meta = metadata()
    for name in names:
        print(f"{name}", flush=True)
        if args.recommend_only and name in results and "cells" in results[name]:
            results[name] = recommend_again(ENTRIES[name], results[name], args.timeout, args.rounds)
        else:
            results[name] = table_row(ENTRIES[name], args.timeout, args.rounds, 0 if args.bench_recommended_only else args.rounds)
        write_results(results, {**meta, "rounds": args.rounds})


def redraw() -> None:
    """Re-classify every stored refusal (``refusal_status``) and rewrite the JSON and the doc."""
    stored = json.loads(JSON_OUT.read_text())
    for row in stored["results"].values():
        for cell in row.get("cells", {}).values():
            if cell["status"] != "ok" and "exit" in cell:
                cell.setdefault("crashed", any(marker in cell["message"] for marker in CRASH_MARKERS))
                cell["status"] = refusal_status(cell)
    write_results(stored["results"], stored["meta"])


def write_results(results: dict, meta: dict) -> None:
    """tools/results/hardening.json and docs/benchmarks/hardening.md, entries in corpus order."""
    ordered = {name: results[name] for name in ENTRIES if name in results}
    JSON_OUT.write_text(json.dumps({"meta": meta, "summary": summary(ordered), "results": ordered}, indent=1, default=_json_default))
    write_doc(ordered, meta)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


if __name__ == "__main__":
    main()
