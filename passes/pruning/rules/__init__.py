"""One coupling rule per ONNX op type (and per com.microsoft op ONNX Runtime's optimizer writes); ops without a
rule freeze every channel they touch.

A rule couples the elements of its node's input and output axes in a ``Coupler`` and, when a
removal changes something that is not a sliced tensor (a Conv's ``group``, a Split's sizes, a
Reshape's shape constant), rewrites its node afterwards. Rules register by domain and op type in ``RULES``
(``base``, read through ``rule_for``); importing this package imports every rule module, so ``RULES`` is complete.
"""

from onnxcompress.passes.pruning.rules import attention, contrib, conv, elementwise, layout, linear, norm, pool, recurrent, routing  # noqa: F401  (they register)
from onnxcompress.passes.pruning.rules.base import RULES, Refused, Rule, rule_for

__all__ = ["RULES", "Refused", "Rule", "rule_for"]
