"""One coupling rule per ONNX op type; ops without a rule freeze every channel they touch.

A rule couples the elements of its node's input and output axes in a ``Coupler`` and, when a
removal changes something that is not a sliced tensor (a Conv's ``group``, a Split's sizes, a
Reshape's shape constant), rewrites its node afterwards. Rules register by op type in ``RULES``
(``base``); importing this package imports every rule module, so ``RULES`` is complete.
"""

from onnxcompress.passes.pruning.rules import attention, conv, elementwise, layout, linear, norm, pool, routing  # noqa: F401  (they register)
from onnxcompress.passes.pruning.rules.base import RULES, Refused, Rule

__all__ = ["RULES", "Refused", "Rule"]
