"""Pass specs: ``name:k=v,k=v`` strings and TOML recipes turned into configured passes.

Option values are coerced to the types the pass declares (``CompressionPass.option_specs``); an
unknown pass or option is a one-line ``UsageError`` that lists the valid ones.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from onnxcompress import io
from onnxcompress.errors import UsageError
from onnxcompress.passes import REGISTRY, CompressionPass
from onnxcompress.passes.base import is_union, type_text

LIST_SEPARATOR = "|"
TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


def parse_pass(spec: str) -> CompressionPass:
    """Build the pass a ``name:k=v,...`` spec describes."""
    name, _, rest = spec.strip().partition(":")
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"bad option {item!r} in {spec!r}: expected key=value{_list_hint(name.strip(), options, item)}")
        options[key.strip()] = value.strip()
    return build_pass(name.strip(), options)


def _list_hint(name: str, options: dict[str, str], item: str) -> str:
    """When ``item`` follows a list option, say that commas separate options and ``|`` list items (``a=x|y``)."""
    last, cls = next(reversed(options), None), REGISTRY.get(name)
    option = cls.option_specs().get(last) if cls is not None and last is not None else None
    if option is None or not _is_list(option.annotation):
        return ""
    return f"; list items are separated by {LIST_SEPARATOR!r}, not ',' ({last}={options[last]}{LIST_SEPARATOR}{item})"


def _is_list(annotation: Any) -> bool:
    """True for a list or tuple option, optional or not."""
    parts = typing.get_args(annotation) if is_union(annotation) else (annotation,)
    return any(part in (list, tuple) or typing.get_origin(part) in (list, tuple) for part in parts)


def pass_class(name: str) -> type[CompressionPass]:
    """The pass registered as ``name``; an unknown name is a one-line ``UsageError`` listing the available ones."""
    cls = REGISTRY.get(name)
    if cls is None:
        raise UsageError(f"unknown pass {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return cls


def build_pass(name: str, options: dict[str, Any]) -> CompressionPass:
    """Build a registered pass from option values (strings are coerced to the option's type)."""
    cls = pass_class(name)
    specs = cls.option_specs()
    kwargs = {}
    for key, value in options.items():
        if key not in specs:
            valid = ", ".join(specs) or "none"
            raise UsageError(f"pass {name!r} has no option {key!r}; options: {valid}")
        kwargs[key] = coerce(value, specs[key].annotation, f"{name}:{key}") if isinstance(value, str) else value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"pass {name!r}: {exc}") from None


RECIPES = Path(__file__).resolve().parent / "recipes"  # the recipes shipped with onnxcompress, by name


def shipped_recipes() -> list[str]:
    """The names of the shipped recipes (``--recipe cnn-int8``)."""
    return sorted(path.stem for path in RECIPES.glob("*.toml"))


def recipe_path(recipe: str | Path) -> Path:
    """The file of ``recipe``: a path, or the name of a shipped recipe when no such file exists."""
    path = Path(recipe)
    shipped = RECIPES / f"{path.name}.toml"
    return shipped if not path.exists() and path.parent == Path(".") and shipped.is_file() else path


def load_recipe(path: str | Path) -> list[CompressionPass]:
    """Read a TOML recipe (a file, or a shipped recipe's name): ``[[pass]]`` tables, each with ``name`` and its options."""
    path = recipe_path(path)
    if not path.exists():
        raise UsageError(f"recipe {path}: no such file, nor a shipped recipe ({', '.join(shipped_recipes())})")
    text = io.read_text(path, prefix="recipe ")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"recipe {path}: not valid TOML ({exc})") from None
    entries = data.get("pass")
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"recipe {path}: expected one or more [[pass]] tables")
    passes = []
    for entry in entries:
        options = {k: spell(v) for k, v in entry.items() if k != "name"}
        if "name" not in entry:
            raise UsageError(f"recipe {path}: a [[pass]] table has no name")
        passes.append(build_pass(entry["name"], options))
    return passes


def coerce(text: str, annotation: Any, where: str) -> Any:
    """Turn a CLI string into a value of ``annotation``'s type, or raise a ``UsageError``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if is_union(annotation):
        if text.lower() in {"none", "null"} and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(text, arg, where)
            except UsageError:
                continue
        raise UsageError(f"{where}: cannot read {text!r} as {type_text(annotation)}")
    if origin is typing.Literal:
        if text not in [str(a) for a in args]:
            raise UsageError(f"{where}: {text!r} is not one of {', '.join(map(str, args))}")
        return next(a for a in args if str(a) == text)
    if origin in (list, tuple) or annotation in (list, tuple):
        item = args[0] if args else str
        items = [coerce(t.strip(), item, where) for t in text.split(LIST_SEPARATOR) if t.strip()]
        return items if origin is not tuple else tuple(items)
    if annotation is bool:
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise UsageError(f"{where}: {text!r} is not a boolean (true/false)")
    if annotation in (int, float):
        try:
            return annotation(text)
        except ValueError:
            raise UsageError(f"{where}: {text!r} is not a valid {annotation.__name__}") from None
    if annotation in (str, Any):
        return text
    raise UsageError(f"{where}: this option cannot be set from the command line")


def spell(value: Any) -> str:
    """A value as a spec writes it (``none``, ``true``, ``a|b``): how TOML values and defaults are shown and read."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(map(spell, value))
    return str(value)
