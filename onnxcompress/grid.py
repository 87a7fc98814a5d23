"""Grid recipes: brace lists in a recipe's text expand to every combination (``search``'s candidates).

``prune-channels:ratio={0.1,0.3,0.5};{quantize-static,}`` stands for six recipes: each ``{a,b,c}`` is
replaced by one of its alternatives, every combination taken (the first brace varies slowest). An empty
alternative leaves its text out, so ``;{quantize-static,}`` makes a pass optional; a combination with no
pass left is the input model itself and is dropped. Braces do not nest. The text is expanded before it is
read as pass specs, so a brace may hold a whole pass or several options (``{ratio=0.3,ratio=0.5,scope=global}``).
"""

from __future__ import annotations

import itertools
import math
import re

from onnxcompress.errors import UsageError

MAX_CANDIDATES = 1000  # a grid beyond this is a typo more often than a plan, and would run for days
SEPARATOR = ";"  # between the passes of a recipe (``compare.RECIPE_SEPARATOR`` is this one)
_BRACES = re.compile(r"\{([^{}]*)\}")


def expand(recipe: str) -> list[str]:
    """The recipes ``recipe`` stands for, in order, without repeats, each with its passes joined by ``;``."""
    pieces = _BRACES.split(recipe)
    literals, choices = pieces[0::2], [[alt.strip() for alt in inside.split(",")] for inside in pieces[1::2]]
    stray = next((char for char in "{}" if any(char in text for text in literals)), None)
    if stray:
        raise UsageError(f"recipe {recipe!r}: unbalanced or nested {stray!r} (a grid is {{a,b,c}}, braces do not nest)")
    count = math.prod(len(alternatives) for alternatives in choices)
    if count > MAX_CANDIDATES:
        raise UsageError(f"recipe {recipe!r} expands to {count} recipes, more than {MAX_CANDIDATES}: narrow the grid")
    expanded: dict[str, None] = {}
    for picked in itertools.product(*choices):
        text = "".join(literal + alternative for literal, alternative in zip(literals, [*picked, ""]))
        tidy = SEPARATOR.join(part for part in (p.strip() for p in text.split(SEPARATOR)) if part)
        if tidy:
            expanded[tidy] = None
    return list(expanded)


def expand_all(recipes: list[str]) -> list[str]:
    """Every recipe of every grid in ``recipes``, in order, without repeats (a one-line ``UsageError`` over ``MAX_CANDIDATES``)."""
    expanded = list(dict.fromkeys(r for recipe in recipes for r in expand(recipe)))
    if len(expanded) > MAX_CANDIDATES:
        raise UsageError(f"the recipes expand to {len(expanded)} candidates, more than {MAX_CANDIDATES}: narrow the grid")
    return expanded
