"""How the exact pipeline and `verify` grow with a model's node count, beside ONNX Runtime's own load (#24 item 2).

Models from ``models/scale.py``: ``chain``, a Relu/Neg chain with nothing to fold or fuse (every second is the
tool's own), at 1,000, 10,000, 100,000 and 200,000 nodes, and ``conv``, residual Conv/BatchNormalization/Tanh/
Add/Sqrt/Mul blocks with their weights, where fold-constants and fuse both rewrite, at 1,000, 10,000 and
100,000 (ORT alone takes minutes to load it beyond). Each is measured as a stranger runs it, in a subprocess
of its own:

- ORT: one ``InferenceSession`` of the file at ORT_ENABLE_ALL and one run, timed inside the child (the floor
  the target is set against), and the same at ORT_DISABLE_ALL, what every check loads;
- run: ``onnxcompress run MODEL -o OUT --recipe exact --no-bench``;
- verify: ``onnxcompress verify MODEL OUT``;
- and on the largest ``chain`` only, every other command that reads a model (``COMMANDS``): how long each takes
  on 200,000 nodes and how much memory, against the same ORT load.

For each: wall time, the child's CPU time (user + system, from ``os.wait4``: a shared machine's load shows as
wall above CPU) and its peak resident memory, and CPU seconds per 1,000 nodes beyond what the same command
costs on a 10-node model (interpreter start-up and imports, about 3 s), so linear growth reads as a flat
column. ``/proc/loadavg`` is recorded before each size.

    python tools/bench_node_count.py [--sizes 1000,10000,100000,200000] [--models chain,conv]

Writes tools/results/bench_node_count.json and docs/benchmarks/bench_node_count.md, and its summary section in
docs/benchmarks/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx

from onnxcompress import io
from onnxcompress.cpu import cpu_model_name
from onnxcompress.markdown import table as markdown_table, with_section
from onnxcompress.models import scale

ROOT = Path(__file__).resolve().parents[1]
JSON_OUT = ROOT / "tools" / "results" / "bench_node_count.json"
DOC_OUT = ROOT / "docs" / "benchmarks" / "bench_node_count.md"
SUMMARY_OUT = ROOT / "docs" / "benchmarks" / "benchmarks.md"  # compare_anchors.py's page, which keeps this section
RECIPE = ROOT / "onnxcompress" / "recipes" / "exact.toml"
MODELS = {"chain": scale.chain, "conv": scale.conv_chain}
SIZES = {"chain": (1_000, 10_000, 100_000, 200_000), "conv": (1_000, 10_000, 100_000)}
FIXED_NODES = 10  # the model whose costs are the commands' fixed part
TARGET_RATIO = 3.0  # run and verify each within this multiple of ORT's load + one run
STEPS = ("ort", "run", "verify")
COMMANDS = {  # the other commands a user points at a model, as run on the largest chain (OUT: a file in the folder)
    "inspect": ["inspect", "MODEL"],
    "bench": ["bench", "MODEL", "--rounds", "1"],
    "compare": ["compare", "MODEL", "-r", "fold-constants;cleanup;fuse", "--rounds", "1"],
    "recommend": ["recommend", "MODEL", "--apply", "-o", "OUT"],
    "search": ["search", "MODEL", "-r", "fold-constants;cleanup;fuse", "--min-cosine", "0.99", "-o", "OUT", "--rounds", "1"],
}
LAUNCHER = """
import json, os, subprocess, sys, time
with open(os.environ["BENCH_STDOUT"], "w") as out:
    start = time.perf_counter()
    child = subprocess.Popen(sys.argv[1:], stdout=out)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
print(json.dumps({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}))
sys.exit(os.waitstatus_to_exitcode(status))
"""
ORT_CHILD = """
import json, sys, time
import numpy as np, onnxruntime as ort
options = ort.SessionOptions()
options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, sys.argv[2])
wall, cpu = time.perf_counter(), time.process_time()
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
load_wall, load_cpu = time.perf_counter() - wall, time.process_time() - cpu
session.run(None, {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32) for i in session.get_inputs()})
print(json.dumps({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "load_wall_s": load_wall, "load_cpu_s": load_cpu}))
"""


def measure(command: list[str], folder: Path) -> dict:
    """One child (exit 0 required): wall seconds, its CPU seconds (user + system) and peak MB, its last stdout line.

    The child is started by a small launcher (``LAUNCHER``): Linux carries a parent's peak memory into a child
    it forks, so a child of this process, which holds the models it built, would report at least that."""
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    with err.open("w") as stderr:
        launched = subprocess.run([sys.executable, "-c", LAUNCHER, *map(str, command)], stdout=subprocess.PIPE, stderr=stderr, text=True,
                                  env={**os.environ, "ONNXCOMPRESS_LOG": "warning", "BENCH_STDOUT": str(out)}, check=False)
    if launched.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command[:3]))} failed ({launched.returncode}): {err.read_text().strip()[-500:]}")
    lines = out.read_text().strip().splitlines()
    return {**json.loads(launched.stdout), "last_line": lines[-1] if lines else ""}


def ort_load(path: Path, level: str, folder: Path) -> dict:
    """ORT's session of ``path`` at ``level`` and one run, timed inside the child (interpreter start-up left out)."""
    row = measure([sys.executable, "-c", ORT_CHILD, str(path), level], folder)
    return {**json.loads(row.pop("last_line")), "peak_mb": row["peak_mb"]}


def measure_size(kind: str, nodes: int, folder: Path, fixed: dict | None = None) -> dict:
    """Every step on one model of ``nodes`` nodes; CPU per 1,000 nodes beyond the ``fixed`` model's (a measured row)."""
    model = folder / f"{kind}{nodes}.onnx"
    onnx.save(MODELS[kind](nodes), str(model))
    output = folder / f"{kind}{nodes}.out.onnx"
    script = shutil.which("onnxcompress") or str(Path(sys.executable).with_name("onnxcompress"))
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    row = {"nodes": len(onnx.load(str(model), load_external_data=False).graph.node), "loadavg": loadavg,
           "ort": ort_load(model, "ORT_ENABLE_ALL", folder), "ort_disable": ort_load(model, "ORT_DISABLE_ALL", folder)}
    row["run"] = measure([script, "run", str(model), "-o", str(output), "--recipe", str(RECIPE), "--no-bench"], folder)
    row["verify"] = measure([script, "verify", str(model), str(output)], folder)
    for step in ("run", "verify"):
        row[step].pop("last_line")
        row[step]["over_ort"] = row[step]["wall_s"] / row["ort"]["wall_s"]
        row[step]["cpu_over_ort"] = row[step]["cpu_s"] / row["ort"]["cpu_s"]
        row[step]["over_ort_disable"] = row[step]["wall_s"] / row["ort_disable"]["wall_s"]
    for step in STEPS:
        beyond = row[step]["cpu_s"] - (fixed[step]["cpu_s"] if fixed else 0.0)
        row[step]["cpu_s_per_1k"] = beyond / row["nodes"] * 1000
    print(f"{kind} {row['nodes']}: " + ", ".join(f"{step} {row[step]['wall_s']:.1f} s" for step in STEPS), flush=True)
    return row


def measure_commands(kind: str, nodes: int, folder: Path) -> dict:
    """Every command of ``COMMANDS`` on the ``kind`` model of ``nodes`` nodes (built and saved anew), wall / CPU / peak."""
    model = folder / f"{kind}{nodes}.onnx"
    onnx.save(MODELS[kind](nodes), str(model))
    script = shutil.which("onnxcompress") or str(Path(sys.executable).with_name("onnxcompress"))
    rows = {"nodes": nodes, "loadavg": Path("/proc/loadavg").read_text().split()[:3], "ort": ort_load(model, "ORT_ENABLE_ALL", folder)}
    for name, args in COMMANDS.items():
        out = folder / f"{name}.out.onnx"
        rows[name] = measure([script, *(str(model) if a == "MODEL" else str(out) if a == "OUT" else a for a in args)], folder)
        rows[name].pop("last_line")
        rows[name]["over_ort"] = rows[name]["wall_s"] / rows["ort"]["wall_s"]
        print(f"{kind} {nodes}: {name} {rows[name]['wall_s']:.1f} s", flush=True)
    return rows


def commands_table(rows: dict) -> list[str]:
    """One row per command of ``COMMANDS``: its command line, wall / CPU seconds, × ORT and peak memory."""
    table = [[f"`onnxcompress {shlex.join(COMMANDS[name])}`", f"{rows[name]['wall_s']:.1f} / {rows[name]['cpu_s']:.1f}",
              f"{rows[name]['over_ort']:.1f}", f"{rows[name]['peak_mb']:,.0f}"] for name in COMMANDS]
    return markdown_table(["command", "s", "×ORT", "peak MB"], table)


def markdown(result: dict) -> str:
    """The page: one table per model, then what the target asked and what was reached."""
    lines = [
        "# Wall time against node count: the exact pipeline, `verify` and ONNX Runtime's load", "",
        f"Generated by `tools/bench_node_count.py` on {result['cpu']} ({result['cores']} logical cores, shared: the load "
        "average before each size is in the table). Each step runs in a subprocess of its own: **ORT** is one "
        "`InferenceSession` of the file at ORT_ENABLE_ALL plus one run, timed inside the child (**ORT disable**: the same at "
        "ORT_DISABLE_ALL, what every check of run and verify loads); **run** is "
        "`onnxcompress run MODEL -o OUT --recipe exact --no-bench`; **verify** is `onnxcompress verify MODEL OUT` "
        "(both include the interpreter's start-up and imports). Seconds are wall / CPU (user + system of the child); "
        "per 1k is CPU seconds per 1,000 nodes beyond the command's cost on a 10-node model, flat when growth is "
        "linear (growth beyond it is ONNX Runtime's own load, see the ORT columns); ×ORT is wall over ORT's load + run; "
        "peak is the child's resident memory.", ""]
    for kind, rows in result["models"].items():
        fixed = result["fixed"][kind]
        lines += [f"## `{kind}`: {MODEL_TEXT[kind]}", "",
                  f"On {fixed['nodes']} nodes (the fixed part taken out of per 1k): run {fixed['run']['cpu_s']:.1f} s, "
                  f"verify {fixed['verify']['cpu_s']:.1f} s CPU.", "", *rows_table(rows, full=True), ""]
    commands = result["commands"]
    lines += [f"## Every other command on the {commands['nodes']:,}-node `chain`", "",
              f"ORT's load + run of the same file: {commands['ort']['wall_s']:.1f} s (load average before: "
              f"{' '.join(commands['loadavg'])}).", "", *commands_table(commands), ""]
    return "\n".join([*lines, *verdict(result)]) + "\n"


def section(result: dict) -> str:
    """The summary ``docs/benchmarks/benchmarks.md`` carries (``markdown.with_section``): the main columns, the verdict."""
    lines = ["## Node count: the exact pipeline and `verify` against ONNX Runtime's load", "",
             "From `tools/bench_node_count.py` (all columns and the method: [bench_node_count.md](bench_node_count.md)). "
             "Seconds are wall / CPU of a subprocess; per 1k is CPU seconds per 1,000 nodes beyond a 10-node model's; "
             "×ORT is wall over one ORT_ENABLE_ALL session load + run of the same file. The machine is shared: "
             "`/proc/loadavg` before each size is in the table.", ""]
    for kind, rows in result["models"].items():
        lines += [f"`{kind}`: {MODEL_TEXT[kind]}", "", *rows_table(rows, full=False), ""]
    return "\n".join([*lines, *verdict(result)])


def rows_table(rows: list[dict], *, full: bool) -> list[str]:
    """One model's rows: every column, or (``full=False``) those the summary shows."""
    header = ["nodes", "load avg", "ORT s", "ORT disable s"]
    table = []
    for row in rows:
        cells = [f"{row['nodes']:,}", " ".join(row["loadavg"]), f"{row['ort']['wall_s']:.2f} / {row['ort']['cpu_s']:.2f}",
                 f"{row['ort_disable']['wall_s']:.2f}"]
        for step in ("run", "verify"):
            cells += [f"{row[step]['wall_s']:.1f} / {row[step]['cpu_s']:.1f}", f"{row[step]['cpu_s_per_1k']:.2f}", f"{row[step]['over_ort']:.1f}"]
            cells += [f"{row[step]['over_ort_disable']:.1f}", f"{row[step]['peak_mb']:,.0f}"] if full else []
        table.append(cells)
    for step in ("run", "verify"):
        header += [f"{step} s", f"{step} per 1k", f"{step} ×ORT", *([f"{step} ×ORT disable", f"{step} peak MB"] if full else [])]
    return markdown_table(header, table)


def verdict(result: dict) -> list[str]:
    """The target and, per model, whether its largest size met it."""
    lines = [f"Target (#24 item 2): run and verify each within {TARGET_RATIO:g}× ORT's load + run (at 200,000 nodes); each model's largest size:", ""]
    for kind, rows in result["models"].items():
        top = rows[-1]
        met = all(top[step]["over_ort"] <= TARGET_RATIO for step in ("run", "verify"))
        lines.append(f"- `{kind}` at {top['nodes']:,} nodes: run {top['run']['over_ort']:.1f}×, verify {top['verify']['over_ort']:.1f}× "
                     f"ORT's load + run: {'met' if met else 'MISSED'} (against its load at ORT_DISABLE_ALL, what the checks "
                     f"load: run {top['run']['over_ort_disable']:.1f}×, verify {top['verify']['over_ort_disable']:.1f}×)")
    return lines


MODEL_TEXT = {
    "chain": "alternating Relu/Neg on a [1, 16] input, nothing to fold or fuse",
    "conv": "residual Conv/BatchNormalization/Tanh/Add/Sqrt/Mul blocks on [1, 8, 8, 8], one Sqrt folded and one BN fused per block",
}


def sizes(args: argparse.Namespace, kind: str) -> list[int]:
    """The node counts to measure ``kind`` at: ``--sizes``, else its own."""
    return [int(size) for size in args.sizes.split(",")] if args.sizes else list(SIZES[kind])


def main() -> None:
    """Measure every model at every size, write the JSON and the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="node counts, comma-separated (default: each model's, see above)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"which of {', '.join(MODELS)}")
    args = parser.parse_args()
    result = {"cpu": cpu_model_name(), "cores": os.cpu_count(), "fixed": {}, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.models.split(","):
            fixed = result["fixed"][kind] = measure_size(kind, FIXED_NODES, Path(tmp))
            result["models"][kind] = [measure_size(kind, nodes, Path(tmp), fixed) for nodes in sizes(args, kind)]
        result["commands"] = measure_commands("chain", max(sizes(args, "chain")), Path(tmp))
    io.write_bytes(JSON_OUT, json.dumps(result, indent=2).encode())
    io.write_bytes(DOC_OUT, markdown(result).encode())
    io.write_bytes(SUMMARY_OUT, with_section(SUMMARY_OUT.read_text(), "bench_node_count", section(result)).encode())
    print(markdown(result))


if __name__ == "__main__":
    main()
