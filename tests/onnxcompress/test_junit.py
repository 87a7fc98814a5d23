"""JUnit XML: parses with xml.etree, one test case per check and output, failures counted."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from onnxcompress import io, verify
from onnxcompress.junit import junit_xml


def test_failures_are_counted_and_named(verify_models):
    result = verify.verify_models(io.load(verify_models["ref"]), io.load(verify_models["wrong_channels"]))
    root = ET.fromstring(junit_xml(result))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert len(cases) == int(suite.get("tests")) == len(result.checks) + len(result.outputs)
    assert failed == ["channel consistency rules", "run (ORT_DISABLE_ALL)", "y"]
    assert int(suite.get("failures")) == int(root.get("failures")) == 3
    assert "2 input channels" in cases[1].find("failure").get("message")


def test_passing_result_has_no_failures_and_reports_numbers(verify_models):
    result = verify.verify_models(io.load(verify_models["ref"]), io.load(verify_models["copy"]))
    suite = ET.fromstring(junit_xml(result)).find("testsuite")
    assert suite.get("failures") == "0"
    output_case = suite.findall("testcase")[-1]
    assert output_case.get("classname") == "onnxcompress.verify.outputs"
    assert "max abs error 0" in output_case.find("system-out").text


def test_the_gates_are_suite_properties_and_a_missed_gate_is_the_failure_message(verify_models):
    gates = verify.Gates(min_cosine=0.9999999, min_topk_agreement=0.5, top_k=1)
    result = verify.verify_models(io.load(verify_models["ref"]), io.load(verify_models["perturbed"]), gates=gates)
    suite = ET.fromstring(junit_xml(result)).find("testsuite")
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties == {"rtol": "0.001", "atol": "0.0001", "tolerance_gates": "False",
                          "min_cosine": "0.9999999", "min_topk_agreement": "0.5", "top_k": "1"}
    message = suite.findall("testcase")[-1].find("failure").get("message")
    assert message.startswith("cosine ") and message.endswith(" < 0.9999999")
