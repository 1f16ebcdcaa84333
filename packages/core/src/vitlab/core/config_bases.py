"""Config files that name their base: a top-level ``_base_`` key, expanded into ``--config`` files.

A recipe states only what is its own and names the file(s) it builds on::

    _base_: ../_base/trainer.yaml          # relative to this file; a list is applied in order
    trainer:
      max_epochs: 4
      callbacks+: [...]                    # `+` appends to the base's list instead of replacing it

``vitlab fit --config recipe.yaml`` then runs as ``--config <base> --config <recipe>``: the composition
jsonargparse already merges (later files win, ``init_args`` of the same class merge, ``key+`` appends).
Bases may name bases; each file is applied once, at its first appearance, so two recipes on one base
do not apply it twice. ``--print_config`` shows the merged result.

Every file given with ``--config`` is read here first, so a YAML syntax error is one line naming the
file, line and column (jsonargparse would report it for ``"<unicode string>"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from vitlab.core.errors import ConfigError

__all__ = ["BASE_KEY", "config_chain", "expand_config_args", "read_config", "strip_base"]

BASE_KEY = "_base_"
_FLAGS = ("--config", "-c")


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except (OSError, ValueError):  # an inline YAML string too long or odd to be a path
        return False


def read_config(path: str | os.PathLike) -> tuple[str, Any]:
    """``(text, parsed)`` of a config file; a syntax error names the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"config {path} cannot be read ({err.strerror or err})") from err
    try:
        return text, yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(p) for p in (err.context, err.problem) if p)
        raise ConfigError(f"config {path}: invalid YAML{where}: {what}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path}: invalid YAML: {err}") from err


def _bases_of(path: Path, data: Any) -> list[Path]:
    if not isinstance(data, dict) or BASE_KEY not in data:
        return []
    value = data[BASE_KEY]
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"config {path}: `{BASE_KEY}` must be a path or a list of paths (relative to the file), "
                          f"got {value!r}")
    bases = []
    for name in names:
        base = Path(os.path.normpath(Path(name) if os.path.isabs(name) else path.parent / name))
        if not base.is_file():
            raise ConfigError(f"config {path}: `{BASE_KEY}` {name!r} names no file (looked for {base})")
        bases.append(base)
    return bases


def strip_base(text: str, path: str | os.PathLike = "<config>") -> str:
    """``text`` without its top-level ``_base_`` entry, everything else byte for byte (comments, number forms)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        return text
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == BASE_KEY:
            stripped = text[:key.start_mark.index] + text[value.end_mark.index:]
            break
    else:
        return text
    expected = {k: v for k, v in yaml.safe_load(text).items() if k != BASE_KEY}
    if (yaml.safe_load(stripped) or {}) != expected:
        raise ConfigError(f"config {path}: write `{BASE_KEY}` as a top-level block entry on its own line(s) "
                          "(`_base_: file.yaml` or a `- file.yaml` list below it)")
    return stripped


def _compose(path: Path, stack: tuple[Path, ...], seen: set[Path]) -> list[tuple[Path, str | None]]:
    """``(file, stripped text or None)`` in application order: bases first, each file once."""
    key = path.resolve()
    seen.add(key)
    text, data = read_config(path)
    bases = _bases_of(path, data)
    out: list[tuple[Path, str | None]] = []
    for base in bases:
        if base.resolve() in (*stack, key):
            chain = " -> ".join(str(p) for p in (*stack, key, base.resolve()))
            raise ConfigError(f"config {path}: `{BASE_KEY}` chain loops back on itself ({chain})")
        if base.resolve() not in seen:
            out += _compose(base, (*stack, key), seen)
    out.append((path, strip_base(text, path) if bases else None))
    return out


def config_chain(path: str | os.PathLike) -> list[Path]:
    """The files ``--config path`` applies, in order (its bases first, then ``path``)."""
    return [p for p, _ in _compose(Path(path), (), set())]


def expand_config_args(args: Sequence[Any]) -> list[str]:
    """``args`` with each ``--config FILE`` replaced by its bases' ``--config``s followed by its own.

    A file with no ``_base_`` stays a path (read by jsonargparse as before); a file with one is passed on
    as its text without the ``_base_`` key. Values that are not files (inline YAML) pass through unchanged.
    """
    items = [str(a) for a in args]
    out: list[str] = []
    seen: set[Path] = set()
    i = 0
    while i < len(items):
        item = items[i]
        if item in _FLAGS and i + 1 < len(items):
            value, i = items[i + 1], i + 2
        elif item.startswith("--config="):
            value, i = item.split("=", 1)[1], i + 1
        else:
            out.append(item)
            i += 1
            continue
        if not _is_file(value):
            out += ["--config", value]
            continue
        for path, text in _compose(Path(value), (), seen):
            if text is None:
                out += ["--config", str(path)]
            elif yaml.safe_load(text):  # an overlay that only names bases adds nothing of its own
                out += ["--config", text]
    return out
