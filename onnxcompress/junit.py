"""JUnit XML for ``verify`` results: one test case per check and per output, read by CI parsers.

Written with ``xml.etree`` (escaping handled there) in the common Jenkins/GitHub/GitLab dialect:
``<testsuites><testsuite tests= failures=><testcase classname= name=><failure message=>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from onnxcompress.verify import VerifyResult

SUITE = "onnxcompress.verify"


def junit_xml(result: VerifyResult, suite: str = SUITE) -> str:
    """The XML document (UTF-8 text with declaration) for one verification."""
    cases = [(f"{suite}.checks", c.name, c.passed, c.detail) for c in result.checks]
    cases += [(f"{suite}.outputs", o.name, o.passed, o.detail or _summary(o)) for o in result.outputs]
    failures = sum(1 for *_, passed, _ in cases if not passed)
    root = ET.Element("testsuites", tests=str(len(cases)), failures=str(failures), errors="0")
    suite_el = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0", skipped="0")
    for classname, name, passed, detail in cases:
        case = ET.SubElement(suite_el, "testcase", classname=classname, name=name)
        if not passed:
            ET.SubElement(case, "failure", message=detail.splitlines()[0] if detail else "failed").text = detail
        elif detail:
            ET.SubElement(case, "system-out").text = detail
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _summary(output) -> str:
    return (
        f"max abs error {output.max_abs_err:.4g}, cosine {output.cosine:.6f}, SNR {output.snr_db:.1f} dB, "
        f"min atol {output.min_atol:.4g}, min rtol {output.min_rtol:.4g}"
    )
