"""The one command-line convention: a command is a config dataclass.

Each simple field (int, float, str, bool, a list of str, int or float: a repeated option; also
inside ``X | None``) becomes an option named after it (``gen_length`` -> ``--gen-length``, a bool
``--x/--no-x``), with the field's docstring as its help and the dataclass's default shown, never
retyped. Fields of nested dataclass blocks listed in ``flatten`` become options too, under their own names
(``--lr`` for ``train.lr``). Every command also takes ``--set dotted.key=value`` (repeatable,
YAML values) for any field, including those without an option (dicts such as
``policy_options``). The command receives the options that were given, by dotted path, and
the ``--set`` settings; it builds its config with :func:`demask.config.from_dict`, so a
misspelt key or a wrong type is an error naming the field.

User errors (ValueError, FileNotFoundError, ...) raised by a command become one ``error:`` line
and exit code 2; any other exception one ``error:`` line naming its type and exit code 1;
``demask --debug COMMAND`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import typer

from demask.config import apply_settings, field_docs, to_dict
from demask.model.hub import saved_completion_length

_SIMPLE = (int, float, str, bool)


@dataclass(frozen=True)
class Flag:
    """One generated option: the dotted path of the field it sets and its typer parameter."""

    path: tuple[str, ...]
    parameter: inspect.Parameter


def _option_type(hint: Any) -> Any:
    """The option's type for a field hint, or None for fields left to ``--set``."""
    if hint in _SIMPLE:
        return hint
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [_option_type(a) for a in typing.get_args(hint) if a is not type(None)]
        usable = [a for a in inner if a is not None]
        # ``str | UnmaskingPolicy``: the command line can only name it
        return usable[0] if len(usable) == 1 else None
    if origin is list and typing.get_args(hint) in ((str,), (int,), (float,)):
        return hint  # a repeated option
    return None


def config_flags(
    cls: type,
    *,
    flatten: Iterable[str] = (),
    skip: Iterable[str] = (),
    defaults: Any = None,
    from_file: bool = False,
    _prefix: tuple[str, ...] = (),
    _taken: set[str] | None = None,
) -> list[Flag]:
    """The options of dataclass ``cls`` (see the module docstring).

    flatten: names of nested dataclass fields whose own fields become options too.
    skip: field names (at any depth) that get no option (the command has its own for them).
    defaults: an instance whose values are shown as defaults (default: each field's own).
    from_file: the command reads its config from a recipe file, so the help says the
        default comes from there instead of showing the dataclass's.
    A name already taken by an earlier field keeps the earlier option; the later field is
    reachable with ``--set``.
    """
    flatten, skip = set(flatten), set(skip)
    taken = set() if _taken is None else _taken
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    flags: list[Flag] = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        default = _default_of(f, defaults)
        hint = hints[f.name]
        if f.name in flatten:
            nested = next(
                a for a in (hint, *typing.get_args(hint)) if isinstance(a, type) and dataclasses.is_dataclass(a)
            )
            flags += config_flags(
                nested,
                flatten=flatten,
                skip=skip,
                defaults=default,
                from_file=from_file,
                _prefix=(*_prefix, f.name),
                _taken=taken,
            )
            continue
        typ = _option_type(hint)
        if typ is None or f.name in taken:
            continue
        taken.add(f.name)
        required = default is dataclasses.MISSING
        flag = "--" + f.name.replace("_", "-")
        decls = (f"{flag}/--no-{flag[2:]}",) if typ is bool else (flag,)
        # "\\[" is a literal bracket, not rich markup
        shown = (
            ""
            if required or (default is None and not from_file)
            else " \\[default: from the recipe]"
            if from_file
            else f" \\[default: {_show(default)}]"
        )
        option = typer.Option(
            ... if required else None,
            *decls,
            help=docs.get(f.name, "") + shown,
            show_default=False,
            rich_help_panel=f"{_prefix[-1]} options" if _prefix else None,
        )
        path = (*_prefix, f.name)
        flags.append(
            Flag(
                path,
                inspect.Parameter(
                    "__".join(path),
                    inspect.Parameter.KEYWORD_ONLY,
                    default=option,
                    annotation=typ if required else typ | None,
                ),
            )
        )
    return flags


def _default_of(f: dataclasses.Field, defaults: Any) -> Any:
    if defaults is not None and defaults is not dataclasses.MISSING:
        return getattr(defaults, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _show(value: Any) -> str:
    value = to_dict(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def set_path(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """``raw[a][b][c] = value`` for path (a, b, c), creating the blocks on the way."""
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def gather(
    cls: type,
    given: dict[tuple[str, ...], Any],
    settings: Sequence[str],
    raw: dict[str, Any] | None = None,
    *,
    implicit: str | None = None,
    example: str = "policy_options.threshold=0.8",
) -> dict[str, Any]:
    """A command's config as a mapping: ``raw`` (a recipe, or the command's own defaults), then
    the ``--set`` settings, then the options given (which win). The caller builds ``cls`` from
    it with :func:`demask.config.from_dict`, which checks every key and value."""
    raw = {} if raw is None else raw
    apply_settings(raw, settings, cls, implicit=implicit, example=example)
    for path, value in given.items():
        set_path(raw, path, value)
    return raw


def default_gen_length(decode: dict[str, Any], checkpoint: str) -> None:
    """Without a gen_length, decode a demask checkpoint's own completion length (its recipe.yaml)."""
    if "gen_length" not in decode and (length := saved_completion_length(checkpoint)):
        decode["gen_length"] = length


DEBUG = False
"""Set by ``demask --debug``: let exceptions through with their traceback."""

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)
"""What a wrong input raises: reported as one ``error:`` line, exit code 2."""


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn exceptions into one ``error:`` line: exit 2 for user errors (USER_ERRORS), 1 for
    anything else (a bug: the line says so and how to see the traceback). ``--debug`` lets
    every exception through."""
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit):
        raise
    except USER_ERRORS as exc:
        if DEBUG:
            raise
        raise fail(str(exc)) from None
    except Exception as exc:
        if DEBUG:
            raise
        typer.echo(
            f"error: {type(exc).__name__}: {exc} (unexpected: `demask --debug ...` shows the traceback; "
            "please report it)",
            err=True,
        )
        raise typer.Exit(1) from None


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; the caller raises the returned Exit (code 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


SET_HELP = (
    "Any field by its dotted path, KEY=VALUE with VALUE read as YAML (repeatable), e.g. "
    "{example}; applied before the options above."
)


def command(
    fn: Callable[..., None],
    flags: list[Flag],
    params: Sequence[inspect.Parameter] = (),
    *,
    set_example: str = "policy_options.threshold=0.8",
) -> Callable[..., None]:
    """A typer command from ``fn(given, settings, **params)``: ``given`` maps the dotted path
    of each generated option that was given to its value, ``settings`` is the ``--set`` list.

    ``params`` are the command's own options (inspect.Parameters with typer defaults). User
    errors become ``error:`` lines (exit 2).
    """
    settings = inspect.Parameter(
        "settings",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=list[str] | None,
        default=typer.Option(None, "--set", help=SET_HELP.format(example=set_example)),
    )
    all_params = [*params, *(f.parameter for f in flags), settings]
    by_name = {f.parameter.name: f.path for f in flags}

    @functools.wraps(fn)
    def run(**kwargs: Any) -> None:
        given = {by_name[k]: v for k, v in kwargs.items() if k in by_name and v is not None}
        own = {k: v for k, v in kwargs.items() if k not in by_name and k != "settings"}
        with reported_errors():
            fn(given, list(kwargs.get("settings") or ()), **own)

    run.__signature__ = inspect.Signature(all_params)  # type: ignore[attr-defined]  # read by typer
    run.__annotations__ = {p.name: p.annotation for p in all_params}
    del run.__wrapped__  # typer must read the generated signature, not fn's
    return run
