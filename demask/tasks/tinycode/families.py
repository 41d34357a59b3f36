"""The three TinyCode families: list pipelines, string transforms, integer arithmetic.

A family fixes the argument (``xs``: a list of ints, ``s``: a string, ``n``: an int), its
primitives (transforms, then one terminal), how to draw test inputs, and the edge inputs
every task is tested on (the empty list, the empty string, 0 and a negative number).

The code of each family is written in one regular style (one comprehension shape for all
list filters and maps, one conditional-expression shape for all integer conditionals, the
same words for the same operation in every family) so that a tiny model can learn to map a
docstring sentence to a line. Not covered: nested data (lists of strings, dicts), loops
with state across items (running sums), early returns.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from demask.tasks.tinycode.primitives import ConstKind, Primitive

F, A, T, C, CH = (ConstKind.FACTOR, ConstKind.ADDEND, ConstKind.THRESHOLD, ConstKind.COUNT, ConstKind.CHAR)


@dataclass(frozen=True)
class InputSpace:
    """Where a family's test inputs come from (filled in from TinyCodeConfig)."""

    list_len: tuple[int, int]
    list_values: tuple[int, int]
    int_values: tuple[int, int]
    str_len: tuple[int, int]
    alphabet: str


@dataclass(frozen=True)
class Family:
    """A family of tasks over one argument type.

    identity: the terminal that returns the argument unchanged; a composition made of it
        alone is the identity function and is never generated.
    draw_input: ``(rng, space, consts) -> value``; ``consts`` are the task's constants, which
        it mixes into inputs so that boundary cases (x == c, a multiple of k) get tested.
    """

    name: str
    arg: str
    nouns: tuple[str, ...]
    transforms: tuple[Primitive, ...]
    terminals: tuple[Primitive, ...]
    identity: str
    edge_inputs: tuple[Any, ...]
    draw_input: Callable[[random.Random, InputSpace, tuple], Any]

    @property
    def primitives(self) -> dict[str, Primitive]:
        return {p.name: p for p in (*self.transforms, *self.terminals)}


def _step(
    family: str, slug: str, code: str, phrases: tuple[str, ...], fn: Callable, slots: tuple = (), **kw: Any
) -> Primitive:
    return Primitive(
        name=f"{family}.{slug}",
        slug=slug,
        terminal=code.startswith("return "),
        code=code,
        phrases=phrases,
        fn=fn,
        slots=slots,
        **kw,
    )


@functools.lru_cache(maxsize=4096)
def _near(consts: tuple) -> tuple[int, ...]:
    """Integers where a comparison or a modulus with one of ``consts`` changes its answer."""
    ints = [v for v in consts if isinstance(v, int)]
    out = set()
    for v in ints:
        out |= {v - 1, v, v + 1, 2 * v, 3 * v, -v, v * v}
    for u, v in itertools.permutations(ints, 2):  # where n + a crosses c, n * k reaches c...
        out |= {u + v, u - v, u * v, u + v + 1, u - v + 1, u + v - 1, u - v - 1}
    return tuple(sorted(out))


# ---------------------------------------------------------------- list of ints: xs, x
def _list_input(rng: random.Random, space: InputSpace, consts: tuple) -> list[int]:
    near = _near(consts)
    n = rng.randint(max(1, space.list_len[0]), space.list_len[1])
    return [rng.choice(near) if near and rng.random() < 0.35 else rng.randint(*space.list_values) for _ in range(n)]


def _l(slug, code, phrases, fn, slots=(), **kw):
    return _step("list", slug, "xs = " + code if not code.startswith("return") else code, phrases, fn, slots, **kw)


LIST_TRANSFORMS = (
    _l(
        "keep_gt",
        "[x for x in xs if x > {c}]",
        ("Keep the numbers greater than {c}.", "Keep only the values above {c}."),
        lambda xs, c: [x for x in xs if x > c],
        (("c", T),),
    ),
    _l(
        "keep_lt",
        "[x for x in xs if x < {c}]",
        ("Keep the numbers less than {c}.", "Keep only the values below {c}."),
        lambda xs, c: [x for x in xs if x < c],
        (("c", T),),
    ),
    _l(
        "keep_div",
        "[x for x in xs if x % {k} == 0]",
        ("Keep the numbers divisible by {k}.", "Keep only the multiples of {k}."),
        lambda xs, k: [x for x in xs if x % k == 0],
        (("k", F),),
        aliases=((0, 2, "list.keep_even"),),  # the same line of code
    ),
    _l(
        "drop_div",
        "[x for x in xs if x % {k} != 0]",
        ("Remove the numbers divisible by {k}.", "Drop the multiples of {k}."),
        lambda xs, k: [x for x in xs if x % k != 0],
        (("k", F),),
        aliases=((0, 2, "list.keep_odd"),),  # x % 2 != 0 is x % 2 == 1
    ),
    _l(
        "keep_even",
        "[x for x in xs if x % 2 == 0]",
        ("Keep the even numbers.", "Keep only the even values."),
        lambda xs: [x for x in xs if x % 2 == 0],
    ),
    _l(
        "keep_odd",
        "[x for x in xs if x % 2 == 1]",
        ("Keep the odd numbers.", "Keep only the odd values."),
        lambda xs: [x for x in xs if x % 2 == 1],
    ),
    _l(
        "drop_eq",
        "[x for x in xs if x != {c}]",
        ("Remove every {c}.", "Drop the values equal to {c}."),
        lambda xs, c: [x for x in xs if x != c],
        (("c", T),),
    ),
    _l(
        "mul",
        "[x * {k} for x in xs]",
        ("Multiply each number by {k}.", "Multiply every value by {k}."),
        lambda xs, k: [x * k for x in xs],
        (("k", F),),
    ),
    _l(
        "add",
        "[x + {a} for x in xs]",
        ("Add {a} to each number.", "Increase every value by {a}."),
        lambda xs, a: [x + a for x in xs],
        (("a", A),),
    ),
    _l(
        "sub",
        "[x - {a} for x in xs]",
        ("Subtract {a} from each number.", "Decrease every value by {a}."),
        lambda xs, a: [x - a for x in xs],
        (("a", A),),
    ),
    _l(
        "mod",
        "[x % {k} for x in xs]",
        ("Replace each number by its remainder modulo {k}.", "Take every value modulo {k}."),
        lambda xs, k: [x % k for x in xs],
        (("k", F),),
    ),
    _l(
        "div",
        "[x // {k} for x in xs]",
        ("Divide each number by {k}, rounding down.", "Integer-divide every value by {k}."),
        lambda xs, k: [x // k for x in xs],
        (("k", F),),
    ),
    _l(
        "abs",
        "[abs(x) for x in xs]",
        ("Replace each number by its absolute value.", "Take the absolute value of every value."),
        lambda xs: [abs(x) for x in xs],
    ),
    _l(
        "square",
        "[x * x for x in xs]",
        ("Square each number.", "Replace every value by its square."),
        lambda xs: [x * x for x in xs],
    ),
    _l(
        "neg", "[-x for x in xs]", ("Negate each number.", "Flip the sign of every value."), lambda xs: [-x for x in xs]
    ),
    _l(
        "cap",
        "[min(x, {c}) for x in xs]",
        ("Cap each number at {c}.", "Replace every value above {c} by {c}."),
        lambda xs, c: [min(x, c) for x in xs],
        (("c", T),),
    ),
    _l(
        "floor",
        "[max(x, {c}) for x in xs]",
        ("Raise each number below {c} to {c}.", "Replace every value below {c} by {c}."),
        lambda xs, c: [max(x, c) for x in xs],
        (("c", T),),
    ),
    _l(
        "sort",
        "sorted(xs)",
        ("Sort the numbers in increasing order.", "Sort the values from smallest to largest."),
        lambda xs: sorted(xs),
    ),
    _l(
        "sort_desc",
        "sorted(xs, reverse=True)",
        ("Sort the numbers in decreasing order.", "Sort the values from largest to smallest."),
        lambda xs: sorted(xs, reverse=True),
    ),
    _l("reverse", "xs[::-1]", ("Reverse the order of the numbers.", "Reverse the list."), lambda xs: xs[::-1]),
    _l(
        "take",
        "xs[:{n}]",
        ("Keep the first {n} numbers.", "Keep only the first {n} values."),
        lambda xs, n: xs[:n],
        (("n", C),),
    ),
    _l(
        "drop",
        "xs[{n}:]",
        ("Remove the first {n} numbers.", "Drop the first {n} values."),
        lambda xs, n: xs[n:],
        (("n", C),),
    ),
)

LIST_TERMINALS = (
    _l("ret", "return xs", ("Return the list.", "Return the resulting list."), lambda xs: xs),
    _l("sum", "return sum(xs)", ("Return their sum.", "Return the total."), lambda xs: sum(xs)),
    _l("len", "return len(xs)", ("Return how many there are.", "Return the count."), lambda xs: len(xs)),
    _l(
        "max",
        "return max(xs, default=0)",
        ("Return the largest, or 0 if there is none.", "Return the maximum (0 if empty)."),
        lambda xs: max(xs, default=0),
    ),
    _l(
        "min",
        "return min(xs, default=0)",
        ("Return the smallest, or 0 if there is none.", "Return the minimum (0 if empty)."),
        lambda xs: min(xs, default=0),
    ),
    _l(
        "first",
        "return xs[0] if xs else -1",
        ("Return the first one, or -1 if there is none.", "Return the first value (-1 if empty)."),
        lambda xs: xs[0] if xs else -1,
    ),
    _l(
        "last",
        "return xs[-1] if xs else -1",
        ("Return the last one, or -1 if there is none.", "Return the last value (-1 if empty)."),
        lambda xs: xs[-1] if xs else -1,
    ),
    _l(
        "any_gt",
        "return any(x > {c} for x in xs)",
        ("Return whether any is greater than {c}.", "Return whether some value is above {c}."),
        lambda xs, c: any(x > c for x in xs),
        (("c", T),),
    ),
)


# ---------------------------------------------------------------- string: s, ch
def _str_input(rng: random.Random, space: InputSpace, consts: tuple) -> str:
    n = rng.randint(max(1, space.str_len[0]), space.str_len[1])
    return "".join(rng.choices(_str_population(space.alphabet, consts), k=n))


@functools.lru_cache(maxsize=4096)
def _str_population(alphabet: str, consts: tuple) -> str:
    """The alphabet, plus the task's chars repeated so that ~30% of drawn chars are one."""
    chars = "".join(c for c in consts if isinstance(c, str))
    if not chars:
        return alphabet
    return alphabet + chars * max(1, round(0.43 * len(alphabet) / len(chars)))


def _s(slug, code, phrases, fn, slots=(), **kw):
    return _step("str", slug, "s = " + code if not code.startswith("return") else code, phrases, fn, slots, **kw)


STR_TRANSFORMS = (
    _s("upper", "s.upper()", ("Convert it to upper case.", "Make every letter upper case."), lambda s: s.upper()),
    _s("lower", "s.lower()", ("Convert it to lower case.", "Make every letter lower case."), lambda s: s.lower()),
    _s(
        "swapcase",
        "s.swapcase()",
        ("Swap the case of every letter.", "Swap upper and lower case."),
        lambda s: s.swapcase(),
    ),
    _s("reverse", "s[::-1]", ("Reverse the string.", "Reverse the characters."), lambda s: s[::-1]),
    _s(
        "replace",
        "s.replace('{a}', '{b}')",
        ("Replace every '{a}' with '{b}'.", "Change each '{a}' into '{b}'."),
        lambda s, a, b: s.replace(a, b),
        (("a", CH), ("b", CH)),
        must_differ=((0, 1),),
    ),
    _s(
        "remove",
        "s.replace('{a}', '')",
        ("Remove every '{a}'.", "Delete each '{a}'."),
        lambda s, a: s.replace(a, ""),
        (("a", CH),),
    ),
    _s(
        "keep_alpha",
        "''.join(ch for ch in s if ch.isalpha())",
        ("Keep only the letters.", "Remove everything that is not a letter."),
        lambda s: "".join(ch for ch in s if ch.isalpha()),
    ),
    _s(
        "keep_digits",
        "''.join(ch for ch in s if ch.isdigit())",
        ("Keep only the digits.", "Remove everything that is not a digit."),
        lambda s: "".join(ch for ch in s if ch.isdigit()),
    ),
    _s(
        "keep_upper",
        "''.join(ch for ch in s if ch.isupper())",
        ("Keep only the upper case letters.", "Remove everything that is not upper case."),
        lambda s: "".join(ch for ch in s if ch.isupper()),
    ),
    _s(
        "double",
        "''.join(ch + ch for ch in s)",
        ("Double every character.", "Write each character twice."),
        lambda s: "".join(ch + ch for ch in s),
    ),
    _s(
        "take",
        "s[:{n}]",
        ("Keep the first {n} characters.", "Keep only the first {n} characters."),
        lambda s, n: s[:n],
        (("n", C),),
    ),
    _s(
        "drop",
        "s[{n}:]",
        ("Remove the first {n} characters.", "Drop the first {n} characters."),
        lambda s, n: s[n:],
        (("n", C),),
    ),
    _s("append", "s + '{a}'", ("Append '{a}'.", "Add '{a}' at the end."), lambda s, a: s + a, (("a", CH),)),
    _s("prepend", "'{a}' + s", ("Prepend '{a}'.", "Add '{a}' at the start."), lambda s, a: a + s, (("a", CH),)),
)

STR_TERMINALS = (
    _s("ret", "return s", ("Return the string.", "Return the result."), lambda s: s),
    _s("len", "return len(s)", ("Return its length.", "Return the number of characters."), lambda s: len(s)),
    _s(
        "count",
        "return s.count('{a}')",
        ("Return how many times '{a}' appears.", "Return the number of '{a}'."),
        lambda s, a: s.count(a),
        (("a", CH),),
    ),
    _s(
        "is_pal",
        "return s == s[::-1]",
        ("Return whether it reads the same backwards.", "Return whether it is a palindrome."),
        lambda s: s == s[::-1],
    ),
    _s(
        "starts",
        "return s.startswith('{a}')",
        ("Return whether it starts with '{a}'.", "Return whether its first character is '{a}'."),
        lambda s, a: s.startswith(a),
        (("a", CH),),
    ),
    _s(
        "ends",
        "return s.endswith('{a}')",
        ("Return whether it ends with '{a}'.", "Return whether its last character is '{a}'."),
        lambda s, a: s.endswith(a),
        (("a", CH),),
    ),
    _s(
        "n_digits",
        "return sum(ch.isdigit() for ch in s)",
        ("Return how many digits it has.", "Return the number of digits."),
        lambda s: sum(ch.isdigit() for ch in s),
    ),
)


# ---------------------------------------------------------------- integer: n
def _int_input(rng: random.Random, space: InputSpace, consts: tuple) -> int:
    near = _near(consts)
    if near and rng.random() < 0.4:
        return rng.choice(near)
    return rng.randint(*space.int_values)


def _i(slug, code, phrases, fn, slots=(), **kw):
    return _step("int", slug, "n = " + code if not code.startswith("return") else code, phrases, fn, slots, **kw)


INT_TRANSFORMS = (
    _i("add", "n + {a}", ("Add {a}.", "Increase it by {a}."), lambda n, a: n + a, (("a", A),)),
    _i("sub", "n - {a}", ("Subtract {a}.", "Decrease it by {a}."), lambda n, a: n - a, (("a", A),)),
    _i("mul", "n * {k}", ("Multiply it by {k}.", "Multiply by {k}."), lambda n, k: n * k, (("k", F),)),
    _i(
        "div",
        "n // {k}",
        ("Divide it by {k}, rounding down.", "Integer-divide it by {k}."),
        lambda n, k: n // k,
        (("k", F),),
    ),
    _i(
        "mod",
        "n % {k}",
        ("Replace it by its remainder modulo {k}.", "Take its remainder modulo {k}."),
        lambda n, k: n % k,
        (("k", F),),
    ),
    _i("abs", "abs(n)", ("Take its absolute value.", "Replace it by its absolute value."), lambda n: abs(n)),
    _i("neg", "-n", ("Negate it.", "Flip its sign."), lambda n: -n),
    _i("square", "n * n", ("Square it.", "Multiply it by itself."), lambda n: n * n),
    _i(
        "cap",
        "min(n, {c})",
        ("Cap it at {c}.", "If it is above {c}, make it {c}."),
        lambda n, c: min(n, c),
        (("c", T),),
    ),
    _i(
        "floor",
        "max(n, {c})",
        ("Raise it to at least {c}.", "If it is below {c}, make it {c}."),
        lambda n, c: max(n, c),
        (("c", T),),
    ),
    _i(
        "clamp",
        "min(max(n, {lo}), {hi})",
        ("Clamp it between {lo} and {hi}.", "Keep it within {lo} and {hi}."),
        lambda n, lo, hi: min(max(n, lo), hi),
        (("lo", T), ("hi", T)),
        ordered=((0, 1),),
    ),
    _i(
        "if_div",
        "n // {k} if n % {k} == 0 else n + {a}",
        (
            "If it is divisible by {k}, divide it by {k}; otherwise add {a}.",
            "Divide it by {k} when it is a multiple of {k}, else add {a}.",
        ),
        lambda n, k, a: n // k if n % k == 0 else n + a,
        (("k", F), ("a", A)),
    ),
    _i(
        "if_gt",
        "n - {a} if n > {c} else n",
        ("If it is greater than {c}, subtract {a}.", "Subtract {a} when it is above {c}."),
        lambda n, a, c: n - a if n > c else n,
        (("a", A), ("c", T)),
    ),
    _i(
        "if_even",
        "n // 2 if n % 2 == 0 else 3 * n + 1",
        (
            "If it is even, halve it; otherwise triple it and add 1.",
            "Halve it when it is even, else triple it and add 1.",
        ),
        lambda n: n // 2 if n % 2 == 0 else 3 * n + 1,
    ),
    _i(
        "if_neg",
        "n * {k} if n < 0 else n",
        ("If it is negative, multiply it by {k}.", "Multiply it by {k} when it is below 0."),
        lambda n, k: n * k if n < 0 else n,
        (("k", F),),
    ),
    _i(
        "last_digit",
        "abs(n) % 10",
        ("Keep only its last digit.", "Replace it by its last digit."),
        lambda n: abs(n) % 10,
    ),
)

INT_TERMINALS = (
    _i("ret", "return n", ("Return it.", "Return the result."), lambda n: n),
    _i(
        "is_even",
        "return n % 2 == 0",
        ("Return whether it is even.", "Return whether it is a multiple of 2."),
        lambda n: n % 2 == 0,
    ),
    _i(
        "gt",
        "return n > {c}",
        ("Return whether it is greater than {c}.", "Return whether it is above {c}."),
        lambda n, c: n > c,
        (("c", T),),
    ),
    _i(
        "div_by",
        "return n % {k} == 0",
        ("Return whether it is divisible by {k}.", "Return whether it is a multiple of {k}."),
        lambda n, k: n % k == 0,
        (("k", F),),
        aliases=((0, 2, "int.is_even"),),  # the same line and the same sentence
    ),
    _i("str", "return str(n)", ("Return it as a string.", "Return its decimal string."), lambda n: str(n)),
    _i(
        "n_digits",
        "return len(str(abs(n)))",
        ("Return how many digits it has.", "Return its number of digits."),
        lambda n: len(str(abs(n))),
    ),
    _i(
        "sign",
        "return (n > 0) - (n < 0)",
        ("Return its sign: -1, 0 or 1.", "Return -1, 0 or 1 for its sign."),
        lambda n: (n > 0) - (n < 0),
    ),
)


FAMILIES: dict[str, Family] = {
    "list": Family(
        "list",
        "xs",
        ("numbers", "values", "nums", "items"),
        LIST_TRANSFORMS,
        LIST_TERMINALS,
        "list.ret",
        ([],),
        _list_input,
    ),
    "str": Family(
        "str", "s", ("text", "string", "word", "chars"), STR_TRANSFORMS, STR_TERMINALS, "str.ret", ("",), _str_input
    ),
    "int": Family(
        "int", "n", ("number", "value", "num", "integer"), INT_TRANSFORMS, INT_TERMINALS, "int.ret", (0, -7), _int_input
    ),
}

PRIMITIVES: dict[str, Primitive] = {
    name: prim for family in FAMILIES.values() for name, prim in family.primitives.items()
}
