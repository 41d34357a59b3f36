"""Configuration dataclasses <-> plain mappings, for recipes and the command line.

One convention for every configurable thing (DESIGN.md, "Configuration"): a dataclass whose
field docstrings document it and whose ``__post_init__`` validates it. This module is the
rest of that convention:

- :func:`from_dict` builds a dataclass from a mapping (a YAML block), recursively, refusing
  unknown keys (naming the closest field) and values of the wrong type; a class may define
  ``upgrade_keys(raw) -> raw`` to read a former spelling of its keys (with a warning);
- :func:`to_dict` is its inverse (``from_dict(C, to_dict(c)) == c``);
- :func:`apply_settings` applies command-line ``--set dotted.key=value`` settings to a
  mapping, :func:`parse_setting` reads one;
- :func:`field_docs` reads the field docstrings (the CLI's ``--help``) with docstring_parser.

Imports nothing else of demask, so every layer can use it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import yaml

from demask.registry import did_you_mean

C = TypeVar("C")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of dataclass ``cls`` (one line each)."""
    import docstring_parser

    try:
        parsed = docstring_parser.parse_from_object(cls)
    except (OSError, TypeError):  # no source (a frozen application): no help text
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    return {
        p.arg_name: " ".join((p.description or "").split())
        for p in parsed.params
        if p.args[:1] == ["attribute"] and p.arg_name in names
    }


def to_dict(obj: Any) -> Any:
    """A dataclass (recursively) as plain dicts, lists and values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type[C], raw: Mapping[str, Any], where: str = "") -> C:
    """Build dataclass ``cls`` from a mapping, recursively, checking keys and types."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where or 'the recipe'} must be a mapping, got {type(raw).__name__}")
    upgrade = getattr(cls, "upgrade_keys", None)
    if upgrade is not None:
        raw = upgrade(dict(raw), where)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in raw.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ValueError(
                f"unknown key {name!r}{did_you_mean(str(key), fields)} (known: {', '.join(sorted(fields))})"
            )
        kwargs[key] = _coerce(value, hints[key], name)
    return cls(**kwargs)


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(typ)
        if value is None:
            if type(None) in options:
                return None
            raise ValueError(f"{where} may not be null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {typ}")
    if dataclasses.is_dataclass(typ):
        if dataclasses.is_dataclass(value) and isinstance(value, typ):  # type: ignore[arg-type]
            return value
        return from_dict(typ, value, where)  # type: ignore[arg-type]  # typ is a dataclass type
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(typ)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or typ is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if typ is Any:
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool):
            raise ValueError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)  # YAML 1.1 reads 1e-3 as a string
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a number, got {value!r}") from None
    if typ is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
        return value
    return value


def parse_setting(text: str, example: str = "train.lr=1e-4") -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(KEY, VALUE read as YAML)``; ``example`` goes in the error.

    >>> parse_setting("grpo.beta=0.02")
    ('grpo.beta', 0.02)
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r}: write KEY=VALUE, e.g. {example}")
    return key.strip(), yaml.safe_load(value)


def apply_settings(
    raw: dict[str, Any],
    settings: Iterable[str],
    cls: type | None = None,
    example: str = "train.lr=1e-4",
    implicit: str | None = None,
) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` settings (KEY a dotted path, VALUE YAML) to a recipe mapping in place.

    cls: the dataclass ``raw`` describes; a path into a block ``raw`` does not hold yet is
        checked against its fields (misspellings named). implicit: a block whose keys may be
        written without its name (``--set policy_options.threshold=0.8`` for
        ``decode.policy_options.threshold`` in a command whose decoding options are flat).
    The caller builds the dataclass afterwards (:func:`from_dict`), which checks the values.
    """
    for item in settings:
        key, value = parse_setting(item, example)
        parts = key.split(".")
        if not all(parts):
            raise ValueError(f"setting {item!r}: {key!r} is not a dotted KEY=VALUE path, e.g. {example}")
        renamed = getattr(cls, "renamed_keys", {})
        if parts[0] in renamed and parts[0] not in _keys(raw, cls):
            warnings.warn(
                f"setting {item!r}: {parts[0]!r} is called {renamed[parts[0]]!r} now; the old "
                "name goes in the next release",
                DeprecationWarning,
                stacklevel=2,
            )
            parts[0] = renamed[parts[0]]
        if (
            implicit is not None
            and parts[0] not in _keys(raw, cls)
            and parts[0] in _keys(raw.get(implicit) or {}, _field_type(cls, implicit))
        ):
            parts = [implicit, *parts]
        node, node_cls = raw, cls
        implicit_keys = set() if implicit is None else _keys(raw.get(implicit) or {}, _field_type(cls, implicit))
        for depth, part in enumerate(parts[:-1]):
            path = ".".join(parts[: depth + 1])
            known = _keys(node, node_cls) | (implicit_keys if depth == 0 else set())
            if part not in known:
                raise ValueError(f"setting {item!r}: there is no block {path!r}{did_you_mean(part, known)}")
            child = node.get(part)
            child_cls = _field_type(node_cls, part)
            if child is None and (child_cls is not None or _is_mapping_field(node_cls, part)):
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ValueError(f"setting {item!r}: {path} is a value, not a block; set it directly")
            node, node_cls = child, child_cls
        if node_cls is not None and parts[-1] not in _keys(node, node_cls):
            known = _keys(node, node_cls) | (implicit_keys if len(parts) == 1 else set())
            raise ValueError(
                f"setting {item!r}: unknown key {key!r}{did_you_mean(parts[-1], known)} "
                f"(known here: {', '.join(sorted(known))})"
            )
        node[parts[-1]] = value
    return raw


def _keys(node: Mapping[str, Any], cls: type | None) -> set[str]:
    if cls is not None and dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls) if f.init} | set(node)
    return set(node)


def _field_hint(cls: type | None, name: str) -> Any:
    if cls is None or not dataclasses.is_dataclass(cls):
        return None
    return typing.get_type_hints(cls).get(name)


def _field_type(cls: type | None, name: str) -> type | None:
    """The dataclass type of field ``name`` of ``cls`` (inside ``X | None`` too), else None."""
    hint = _field_hint(cls, name)
    candidates = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for candidate in candidates:
        if dataclasses.is_dataclass(candidate):
            return candidate  # type: ignore[return-value]  # a dataclass type
    return None


def _is_mapping_field(cls: type | None, name: str) -> bool:
    hint = _field_hint(cls, name)
    return hint is dict or typing.get_origin(hint) is dict
