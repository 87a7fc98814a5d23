"""Real English sentences from text that ships on the machine, for calibration and fidelity checks.

Sources, read in this fixed order:

1. the docstrings (module, class, function) of Python's standard library, read with ``ast`` from
   the installed interpreter's ``stdlib`` folder (test suites and IDLE left out) — always present;
2. the licence texts in ``/usr/share/common-licenses`` (Debian and Ubuntu systems), when present.

``package_sentences`` reads the docstrings of installed third-party packages the same way: more
training text for distillation (tens of thousands of sentences), kept apart from the corpus so that
held-out corpus sentences stay the same whatever is installed.

Text is cut into paragraphs, code-looking paragraphs (doctests, indented blocks) are dropped, and
the rest is split into sentences by a simple rule: a ``.``, ``!`` or ``?`` followed by whitespace
and a capital letter. Sentences are kept when they have 5–40 words, start with a capital letter,
end with terminal punctuation, contain no code characters and are mostly letters. Nothing is
generated: every sentence is a verbatim span of a source text (with its whitespace collapsed).
The list is deduplicated (case-insensitively) in source order, so it is deterministic for a given
Python installation and set of licence files.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import random
import re
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

LICENSES_DIR = Path("/usr/share/common-licenses")
SKIPPED_STDLIB_PARTS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "__pycache__"}
MIN_WORDS, MAX_WORDS = 5, 40
MIN_LETTER_RATIO = 0.85
CODE_CHARS = re.compile(r"[=_{}\[\]<>|\\`*#@$^~/]|\.\w|\w\(|\)\(|::")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|\$ |[-=~^*]{3,}\s*$)")


def sentences(n: int | None = None, seed: int = 0) -> list[str]:
    """``n`` distinct sentences (all of them when ``n`` is None), shuffled reproducibly by ``seed``."""
    pool = list(all_sentences())
    random.Random(seed).shuffle(pool)
    if n is None:
        return pool
    if n > len(pool):
        raise ValueError(f"the corpus has {len(pool)} sentences, fewer than the {n} requested")
    return pool[:n]


@functools.lru_cache(maxsize=1)
def all_sentences() -> tuple[str, ...]:
    """Every kept sentence, deduplicated, in source order."""
    return tuple(distinct_clean_sentences(source_texts(), seen=set()))


def distinct_clean_sentences(texts: Iterable[str], seen: set[str]) -> Iterator[str]:
    """The clean sentences of ``texts`` in order, each once (case-insensitively); ``seen`` holds the lowercased ones
    already given (it is updated)."""
    for text in texts:
        for sentence in split_sentences(text):
            key = sentence.lower()
            if key not in seen and is_clean(sentence):
                seen.add(key)
                yield sentence


@functools.lru_cache(maxsize=1)
def source_texts() -> tuple[str, ...]:
    """The raw texts, in a fixed order: stdlib docstrings, then licence files (read once)."""
    return (*stdlib_docstrings(), *license_texts())


def package_sentences(packages: Sequence[str], seed: int = 0) -> list[str]:
    """The distinct sentences of the installed ``packages``' docstrings (absent packages skipped) that are not in
    the corpus, shuffled reproducibly by ``seed``."""
    specs = [importlib.util.find_spec(package) for package in packages]
    roots = [Path(spec.origin).parent for spec in specs if spec is not None and spec.origin is not None]
    texts = (text for root in roots for text in docstrings_under(root))
    kept = list(distinct_clean_sentences(texts, seen={sentence.lower() for sentence in all_sentences()}))
    random.Random(seed).shuffle(kept)
    return kept


def stdlib_docstrings() -> Iterator[str]:
    """Docstrings of the standard library's modules, classes and functions, file by file."""
    return docstrings_under(Path(sysconfig.get_paths()["stdlib"]))


def docstrings_under(root: Path) -> Iterator[str]:
    """Docstrings of the modules, classes and functions of the ``.py`` files under ``root`` (test suites, IDLE and
    installed packages left out), file by file in path order."""
    for path in sorted(root.rglob("*.py")):
        if SKIPPED_STDLIB_PARTS.intersection(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        yield from _docstrings(tree)


def _docstrings(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc


def license_texts() -> Iterator[str]:
    """The licence texts shipped in ``/usr/share/common-licenses`` (none on other systems)."""
    if not LICENSES_DIR.is_dir():
        return
    for path in sorted(LICENSES_DIR.iterdir()):
        if path.is_file():
            yield path.read_text(encoding="utf-8", errors="replace")


def split_sentences(text: str) -> Iterator[str]:
    """Rule-based split: prose paragraphs, whitespace collapsed, cut after ``.!?`` + capital."""
    for paragraph in re.split(r"\n\s*\n", text):
        lines = paragraph.splitlines()
        if any(CODE_LINE.match(line) or line.startswith(("    ", "\t")) for line in lines):
            continue
        prose = " ".join(line.strip() for line in lines)
        for sentence in SENTENCE_END.split(prose):
            if sentence:
                yield sentence


def is_clean(sentence: str) -> bool:
    """A prose sentence: 5–40 words, capitalised, terminated, no code characters, mostly letters."""
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    if not sentence[0].isupper() or sentence[-1] not in ".!?" or CODE_CHARS.search(sentence):
        return False
    visible = [c for c in sentence if not c.isspace()]
    return sum(c.isalpha() for c in visible) / len(visible) >= MIN_LETTER_RATIO
