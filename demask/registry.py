"""One registry for every pluggable piece: policies, schedules, objectives, data sources,
distributed strategies, log-prob estimators, advantages, rewards and benchmarks.

    POLICIES = Registry("unmasking policy", base=UnmaskingPolicy)

    @POLICIES.register("confidence", "low-confidence")   # canonical name, then aliases
    class ConfidencePolicy(UnmaskingPolicy): ...

    POLICIES.register_lazy("mine", "my_package.policies:MyPolicy")  # imported on first use
    POLICIES.create("threshold", threshold=0.8)   # options checked against the signature
    POLICIES.get("my_package.policies:MyPolicy")  # any "module:attr" works without registering

Names are case-insensitive and ``_`` equals ``-`` (``mean_std`` finds ``mean-std``); an
unknown name is an error that suggests the closest known one. A lazy entry lets a user's
package offer a piece by name without demask importing that package until the name is
asked for; entries are checked against ``base`` (a subclass for classes, an instance
otherwise) when they are registered or, for lazy ones, first loaded.

Not covered: Python entry points (installed plug-ins found without any registration call).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""`` when none is close.

    >>> did_you_mean("thresold", ["threshold", "factor"])
    "; did you mean 'threshold'?"
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def normalise(name: str) -> str:
    """The lookup key of a name: stripped, lower case, ``_`` written as ``-``."""
    return name.strip().lower().replace("_", "-")


def import_target(target: str) -> Any:
    """The object a ``"module.path:attr"`` string names (``attr`` may be dotted)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{target!r} is not a 'module.path:attribute' reference")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def accepted_options(target: Any) -> tuple[dict[str, bool], bool]:
    """The keyword options ``target(**options)`` accepts: {name: required}, and whether it
    takes any keyword (``**kwargs``). A dataclass's fields, else the call signature."""
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        return {
            f.name: (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(target)
            if f.init
        }, False
    params = inspect.signature(target).parameters.values()
    named = {
        p.name: p.default is inspect.Parameter.empty
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def check_options(target: Any, options: Mapping[str, Any], what: str) -> None:
    """Refuse options ``target`` does not take, naming the closest one, and missing required ones."""
    named, any_keyword = accepted_options(target)
    if not any_keyword:
        for key in options:
            if key not in named:
                known = ", ".join(sorted(named)) or "none"
                raise ValueError(f"{what} has no option {key!r}{did_you_mean(key, named)} (its options: {known})")
    missing = [k for k, required in named.items() if required and k not in options]
    if missing:
        raise ValueError(f"{what} needs the option(s) {', '.join(missing)}; pass them in its options")


class Registry(Generic[T]):
    """Entries (classes or objects) under a canonical name plus aliases."""

    def __init__(self, kind: str, *, base: type | None = None, references: bool = True) -> None:
        """kind: what an entry is, for messages. base: the class every entry must be (or
        subclass). references: whether ``get("module.path:Name")`` imports an unregistered
        entry (off where ':' means something else, as in benchmark specs ``NAME:SPLIT``)."""
        self.kind = kind
        self.base = base
        self.references = references
        self._entries: dict[str, T] = {}  # canonical name -> entry
        self._lazy: dict[str, str] = {}  # canonical name -> "module:attr", until first use
        self._keys: dict[str, str] = {}  # normalised name or alias -> canonical name

    # ------------------------------------------------------------------ adding
    def register(self, name: str, *aliases: str, replace: bool = False) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name", "alias")``."""

        def add(entry: T) -> T:
            return self.add(name, entry, *aliases, replace=replace)

        return add

    def add(self, name: str, entry: T, *aliases: str, replace: bool = False) -> T:
        """Register ``entry`` under ``name`` (and ``aliases``); returns it."""
        self._check(name, entry)
        self._claim(name, aliases, replace)
        self._entries[name] = entry
        self._lazy.pop(name, None)
        _set_name(entry, name)
        return entry

    def register_lazy(self, name: str, target: str, *aliases: str, replace: bool = False) -> None:
        """Register ``"module.path:attr"``, imported the first time ``name`` is looked up."""
        if ":" not in target:
            raise ValueError(f"lazy {self.kind} {name!r}: target {target!r} must be 'module.path:attr'")
        self._claim(name, aliases, replace)
        self._entries.pop(name, None)
        self._lazy[name] = target

    def _claim(self, name: str, aliases: tuple[str, ...], replace: bool) -> None:
        if not name or ":" in name:
            raise ValueError(f"{self.kind} name {name!r} must be non-empty and contain no ':'")
        for key in (name, *aliases):
            owner = self._keys.get(normalise(key))
            if owner is not None and not (replace and owner == name):
                if not replace:
                    raise ValueError(
                        f"{self.kind} name {key!r} is already registered (for {owner!r}); "
                        "pick another name or pass replace=True"
                    )
                self._forget(owner)
        for key in (name, *aliases):
            self._keys[normalise(key)] = name

    def _forget(self, name: str) -> None:
        self._entries.pop(name, None)
        self._lazy.pop(name, None)
        self._keys = {k: v for k, v in self._keys.items() if v != name}

    def _check(self, name: str, entry: Any) -> None:
        if self.base is None:
            return
        ok = issubclass(entry, self.base) if isinstance(entry, type) else isinstance(entry, self.base)
        if not ok:
            raise TypeError(
                f"{self.kind} {name!r}: {entry!r} is not a {self.base.__name__} (subclass it or give an instance of it)"
            )

    # ----------------------------------------------------------------- looking up
    def canonical(self, name: str) -> str:
        """The canonical name ``name`` refers to; unknown names get a "did you mean" error."""
        canonical = self._keys.get(normalise(name))
        if canonical is None:
            hint = "; or give a 'module.path:Name' reference" if self.references else ""
            raise ValueError(
                f"unknown {self.kind} {name!r}{did_you_mean(normalise(name), self._keys)} "
                f"(known: {', '.join(self.names())}{hint})"
            )
        return canonical

    def get(self, name: str) -> T:
        """The entry called ``name`` (loading a lazy one), or the object a ``module:attr`` names."""
        if self.references and normalise(name) not in self._keys and ":" in name:
            entry = self._load(name, name)
            self._check(name, entry)
            return entry
        canonical = self.canonical(name)
        if canonical in self._lazy:
            entry = self._load(canonical, self._lazy[canonical])
            self._check(canonical, entry)
            self._entries[canonical] = entry
            del self._lazy[canonical]
            _set_name(entry, canonical)
        return self._entries[canonical]

    def _load(self, name: str, target: str) -> T:
        try:
            return import_target(target)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(
                f"{self.kind} {name!r} refers to {target!r}, which cannot be loaded: {exc}; "
                "check the module path and that its package is installed"
            ) from None

    def create(self, name: str, **options: Any) -> Any:
        """``get(name)(**options)`` with the options checked against the entry's signature."""
        entry = self.get(name)
        check_options(entry, options, f"{self.kind} {name!r}")
        return entry(**options)  # type: ignore[operator]  # entries of a create()-registry are callables

    def names(self) -> list[str]:
        """Canonical names, in registration order (lazy ones included)."""
        order = dict.fromkeys(self._keys.values())
        return list(order)

    def aliases(self) -> dict[str, str]:
        """Every accepted (normalised) name -> its canonical name."""
        return dict(self._keys)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalise(name) in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def _set_name(entry: Any, name: str) -> None:
    """Let a registered class or function know its name (``type(policy).name``); objects
    that refuse (frozen dataclasses such as a Benchmark, which carry their own) keep theirs."""
    try:
        entry.name = name
    except (AttributeError, TypeError):
        pass
