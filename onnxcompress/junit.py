"""JUnit XML for ``verify`` results: one test case per check and per output, read by CI parsers.

Written with ``xml.etree`` (escaping handled there) in the common Jenkins/GitHub/GitLab dialect:
``<testsuites><testsuite tests= failures=><testcase classname= name=><failure message=>``. The
criteria the outputs were judged by (rtol, atol, each fidelity gate given) are the suite's
``<properties>``; a passing output's ``system-out`` holds its numbers and any gate not applicable to it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import dataclasses

from onnxcompress.verify import OutputResult, VerifyResult

SUITE = "onnxcompress.verify"


def junit_xml(result: VerifyResult, suite: str = SUITE) -> str:
    """The XML document (UTF-8 text with declaration) for one verification."""
    cases = [(f"{suite}.checks", c.name, c.passed, c.detail) for c in result.checks]
    cases += [(f"{suite}.outputs", o.name, o.passed, o.detail if not o.passed else _summary(o)) for o in result.outputs]
    failures = sum(1 for *_, passed, _ in cases if not passed)
    root = ET.Element("testsuites", tests=str(len(cases)), failures=str(failures), errors="0")
    suite_el = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0", skipped="0")
    properties = ET.SubElement(suite_el, "properties")
    for name, value in _criteria(result).items():
        ET.SubElement(properties, "property", name=name, value=str(value))
    for classname, name, passed, detail in cases:
        case = ET.SubElement(suite_el, "testcase", classname=classname, name=name)
        if not passed:
            ET.SubElement(case, "failure", message=detail.splitlines()[0] if detail else "failed").text = detail
        elif detail:
            ET.SubElement(case, "system-out").text = detail
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _criteria(result: VerifyResult) -> dict[str, object]:
    """rtol, atol, whether they gate, and each fidelity gate given."""
    gates = {k: v for k, v in dataclasses.asdict(result.gates).items() if v is not None}
    if result.gates.min_topk_agreement is None:
        gates.pop("top_k")
    return {"rtol": result.rtol, "atol": result.atol, "tolerance_gates": result.tolerance_gates, **gates}


def _summary(output: OutputResult) -> str:
    """The numbers of a passing output, then its detail (a gate not applicable to it)."""
    numbers = (
        f"max abs error {output.max_abs_err:.4g}, cosine {output.cosine:.6f}, SNR {output.snr_db:.1f} dB, "
        f"min atol {output.min_atol:.4g}, min rtol {output.min_rtol:.4g}"
    )
    return "; ".join(filter(None, [numbers, output.detail]))
