"""YAML read safely with each field's line number (for `FILE:LINE: field: message` errors): duplicate
keys, alias bombs and over-deep nesting refused as SpecErrors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .convert import _join
from .errors import SpecError


def _line_map(node: yaml.Node, path: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            p = _join(path, str(k.value))
            out[p] = k.start_mark.line + 1
            _line_map(v, p, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            p = f"{path}[{i}]"
            out[p] = v.start_mark.line + 1
            _line_map(v, p, out)
    return out


def _no_duplicate_keys(node, file: Path, path: str = "") -> None:
    """A key given twice in one mapping is a SpecError naming it (YAML itself keeps the last silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in node.value:
            key = str(k.value)
            where = f"{path}.{key}" if path else key
            if key in seen:
                raise SpecError(
                    f"key given twice (first at line {seen[key]}); keep one",
                    file=file,
                    path=where,
                    line=k.start_mark.line + 1,
                )
            seen[key] = k.start_mark.line + 1
            _no_duplicate_keys(v, file, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _no_duplicate_keys(v, file, f"{path}[{i}]")


MAX_YAML_NODES = 100_000
"""Most nodes a spec document may expand to once its aliases are followed: a sweep is a few hundred;
ten lines of nested aliases (`b: [*a, *a, …]`, a "billion laughs") expand to 10^9, which every walk
over the document (line map, duplicate keys, conversion) would spin on for ever."""


def _check_aliases(root: yaml.Node, file: Path) -> None:
    """Refuse a document whose aliases form a cycle or expand past MAX_YAML_NODES (named by line).

    Each distinct node is visited once (sizes are memoised), so the check itself is linear in the text."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = (
                [c for kv in node.value for c in kv]
                if isinstance(node, yaml.MappingNode)
                else node.value
                if isinstance(node, yaml.SequenceNode)
                else []
            )
            size[key] = 1 + sum(size[id(c)] for c in kids)
            if size[key] > MAX_YAML_NODES:
                raise SpecError(
                    f"YAML aliases expand to more than {MAX_YAML_NODES:,} nodes here (an alias bomb?); "
                    "write the values out or use fewer nested aliases",
                    file=file,
                    line=node.start_mark.line + 1,
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise SpecError(
                "a YAML alias refers to a node that contains it (a recursive alias); a spec must be a tree",
                file=file,
                line=node.start_mark.line + 1,
            )
        on_path.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            stack.extend((c, False) for kv in node.value for c in kv if id(c) not in size)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((c, False) for c in node.value if id(c) not in size)


def read_yaml(file: str | Path) -> tuple[Any, dict[str, int]]:
    """Parse a YAML file; syntax errors become SpecError with the line; so do text that is not UTF-8,
    recursive aliases, alias bombs and nesting too deep to walk."""
    p = Path(file)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SpecError(f"cannot read: {e.strerror}", file=p) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError(
            f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); a sweep or profile is a UTF-8 YAML file",
            file=p,
            line=line,
        ) from None
    if "\x00" in text:
        raise SpecError("holds NUL bytes: a binary file, not YAML", file=p) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_aliases(node, p)
        _no_duplicate_keys(node, p)
        data = yaml.safe_load(text)
        lines = _line_map(node) if node is not None else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(f"YAML syntax error: {problem}", file=p, line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise SpecError("nested too deeply to read (a spec is a few levels deep)", file=p) from None
    return data, lines
