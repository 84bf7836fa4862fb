"""The generic converter: a plain mapping (parsed YAML) into a spec dataclass, rejecting unknown keys
(suggesting the closest valid name) and checking types, ranges and choices, each error as a SpecError
naming the field path and line; and back (`to_plain`)."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

from .. import models as catalogue
from ..models import ModelShape
from .errors import SpecError


def to_plain(obj: Any) -> Any:
    """Dataclasses → dicts, tuples → lists, recursively (JSON-ready)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


class _Ctx:
    def __init__(self, file: str | None, lines: dict[str, int]):
        self.file = file
        self.lines = lines

    def error(self, path: str, message: str) -> SpecError:
        line = self.lines.get(path)
        if line is None:  # fall back to the nearest enclosing field that has a line
            p = path
            while line is None and p:
                p = p.rsplit(".", 1)[0] if "." in p else (p.rsplit("[", 1)[0] if "[" in p else "")
                line = self.lines.get(p)
        return SpecError(message, file=self.file, path=path, line=line)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return "list"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str, ctx: _Ctx, meta: dict | None = None) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if tp is ModelShape:
        return _model(value, path, ctx)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ctx.error(path, f"must not be null (expected {_type_name(tp)})")
        last: SpecError | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, path, ctx, meta)
            except SpecError as e:
                last = e
        assert last is not None
        raise last
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ctx.error(path, f"{value!r} is not one of {', '.join(repr(c) for c in choices)}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a mapping, got {type(value).__name__}")
        return _build(tp, value, path, ctx)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            if args and args[-1] is Ellipsis and isinstance(value, (str, int, float)):
                value = [value]
            else:
                raise ctx.error(path, f"expected a list, got {type(value).__name__}")
        if args and args[-1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]", ctx, meta) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ctx.error(path, f"expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{path}[{i}]", ctx, meta) for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ctx.error(path, f"expected a mapping, got {type(value).__name__}")
        return {str(k): _convert(vt, v, _join(path, str(k)), ctx) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and not value.is_integer())
        ):
            raise ctx.error(path, f"expected an integer, got {value!r}")
        value = int(value)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(path, f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ctx.error(path, f"must be finite, got {value!r}")
    elif tp is str:
        if not isinstance(value, str):
            raise ctx.error(path, f"expected a string, got {value!r}")
        return value
    if meta and isinstance(value, (int, float)):
        lo, strict, hi = meta.get("min"), meta.get("strict", False), meta.get("max")
        hi_strict = meta.get("max_strict", False)
        if lo is not None and (value <= lo if strict else value < lo):
            raise ctx.error(path, f"must be {'>' if strict else '≥'} {lo}, got {value}")
        if hi is not None and (value >= hi if hi_strict else value > hi):
            raise ctx.error(path, f"must be {'<' if hi_strict else '≤'} {hi}, got {value}")
    return value


def _build(cls: type, data: dict, path: str, ctx: _Ctx) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ctx.error(_join(path, str(key)), f"unknown key {key!r}{hint} (valid: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(path, name), ctx, dict(f.metadata))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ctx.error(_join(path, name), "missing required field")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        if isinstance(e, SpecError):
            raise
        raise ctx.error(path, str(e)) from None


def _model(value: Any, path: str, ctx: _Ctx) -> ModelShape:
    if isinstance(value, ModelShape):
        return value
    if isinstance(value, str):
        try:
            return catalogue.get(value)
        except catalogue.UnknownModel as e:
            raise ctx.error(path, str(e)) from None
    if not isinstance(value, dict):
        raise ctx.error(path, f"expected a catalogue name or a mapping, got {value!r}")
    if "path" in value and set(value) <= {"name", "path"}:
        try:
            return catalogue.shape_from_checkpoint(value["path"], value.get("name"))
        except (OSError, ValueError) as e:
            raise ctx.error(_join(path, "path"), str(e)) from None
    if "name" in value and set(value) <= {"name", "init"} and isinstance(value["name"], str):
        shape = _model(value["name"], _join(path, "name"), ctx)
        if "init" in value:
            init = _convert(typing.get_type_hints(ModelShape)["init"], value["init"], _join(path, "init"), ctx)
            shape = dataclasses.replace(shape, init=init)
        return shape
    return _build(ModelShape, value, path, ctx)


def build(cls: type, data: dict, *, file: str | Path | None = None, lines: dict[str, int] | None = None) -> Any:
    """Convert a plain mapping into the dataclass `cls`, with named errors."""
    ctx = _Ctx(str(file) if file else None, lines or {})
    if not isinstance(data, dict):
        raise ctx.error("", f"expected a mapping at the top level, got {type(data).__name__}")
    return _build(cls, data, "", ctx)
