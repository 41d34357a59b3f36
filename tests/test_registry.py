"""demask.registry: the one registry every pluggable piece uses."""

import sys
from dataclasses import dataclass

import pytest

from demask.registry import Registry, accepted_options, check_options, did_you_mean, import_target


class Base:
    pass


@pytest.fixture()
def reg():
    return Registry("widget", base=Base)


def test_names_are_case_insensitive_and_underscore_is_dash(reg):
    @reg.register("mean-std", "meanstd")
    class MeanStd(Base):
        pass

    assert reg.get("Mean_Std") is MeanStd and reg.get(" MEANSTD ") is MeanStd
    assert MeanStd.name == "mean-std"
    assert reg.names() == ["mean-std"] and "mean_std" in reg and "other" not in reg
    assert reg.aliases() == {"mean-std": "mean-std", "meanstd": "mean-std"}


def test_unknown_names_suggest_the_closest_and_list_the_known(reg):
    reg.add("threshold", type("T", (Base,), {}))
    with pytest.raises(ValueError, match=r"unknown widget 'treshold'; did you mean 'threshold'\? \(known: threshold"):
        reg.get("treshold")
    with pytest.raises(ValueError) as info:
        reg.get("zzz")
    assert "did you mean" not in str(info.value)


def test_a_name_or_alias_is_taken_once_unless_replaced(reg):
    first, second = type("A", (Base,), {}), type("B", (Base,), {})
    reg.add("a", first, "x")
    with pytest.raises(ValueError, match="'x' is already registered \\(for 'a'\\)"):
        reg.add("b", second, "x")
    reg.add("a", second, replace=True)
    assert reg.get("a") is second and "x" in reg
    with pytest.raises(ValueError, match="no ':'"):
        reg.add("a:b", first)


def test_entries_are_checked_against_the_base(reg):
    with pytest.raises(TypeError, match="is not a Base"):
        reg.add("bad", int)
    reg.add("instance", Base())  # an instance of the base is fine too
    with pytest.raises(TypeError, match="is not a Base"):
        reg.add("bad-instance", 3)


def test_lazy_entries_import_on_first_lookup(reg, tmp_path, monkeypatch):
    (tmp_path / "lazy_widgets.py").write_text(
        "from test_registry import Base\n\nclass Lazy(Base):\n    pass\n\nNOT_A_WIDGET = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_widgets", raising=False)
    reg.register_lazy("lazy", "lazy_widgets:Lazy", "lz")
    reg.register_lazy("wrong", "lazy_widgets:NOT_A_WIDGET")
    reg.register_lazy("missing", "no_such_module_xyz:Thing")
    assert "lazy_widgets" not in sys.modules and reg.names() == ["lazy", "wrong", "missing"]
    cls = reg.get("LZ")
    assert cls.__name__ == "Lazy" and cls.name == "lazy" and reg.get("lazy") is cls
    with pytest.raises(TypeError, match="is not a Base"):
        reg.get("wrong")
    with pytest.raises(ValueError, match="'missing' refers to 'no_such_module_xyz:Thing', which cannot be loaded"):
        reg.get("missing")
    with pytest.raises(ValueError, match="must be 'module.path:attr'"):
        reg.register_lazy("x", "no_colon")


def test_a_module_reference_needs_no_registration(reg):
    assert reg.get("test_registry:Base") is Base
    with pytest.raises(ValueError, match="cannot be loaded"):
        reg.get("test_registry:Nope")


def test_create_checks_options_against_the_signature(reg):
    @reg.register("knobbed")
    class Knobbed(Base):
        def __init__(self, alpha: float, beta: int = 2) -> None:
            self.alpha, self.beta = alpha, beta

    made = reg.create("knobbed", alpha=0.5)
    assert (made.alpha, made.beta) == (0.5, 2)
    with pytest.raises(
        ValueError,
        match=r"widget 'knobbed' has no option 'alpa'; did you mean 'alpha'\? "
        r"\(its options: alpha, beta\)",
    ):
        reg.create("knobbed", alpa=1)
    with pytest.raises(ValueError, match="needs the option\\(s\\) alpha"):
        reg.create("knobbed")


def test_accepted_options_of_dataclasses_and_functions():
    @dataclass
    class Opts:
        a: int
        b: float = 1.0

    def fn(x, *, y=1, **rest):
        pass

    assert accepted_options(Opts) == ({"a": True, "b": False}, False)
    assert accepted_options(fn) == ({"x": True, "y": False}, True)
    check_options(fn, {"x": 1, "anything": 2}, "fn")  # **rest takes any keyword


def test_did_you_mean_and_import_target():
    assert did_you_mean("lernig_rate", ["learning_rate", "seed"]) == "; did you mean 'learning_rate'?"
    assert did_you_mean("zzz", ["learning_rate"]) == ""
    assert import_target("demask.registry:Registry") is Registry
    with pytest.raises(ValueError, match="module.path:attribute"):
        import_target("demask.registry")


def test_every_project_registry_is_the_one_registry():
    from demask.decoding import POLICIES, SCHEDULES
    from demask.tasks.registry import BENCHMARKS
    from demask.training.distributed import STRATEGIES
    from demask.training.objectives import OBJECTIVES
    from demask.training.rl.advantages import ADVANTAGES
    from demask.training.rl.estimators import ESTIMATORS
    from demask.training.rl.rewards import REWARDS
    from demask.training.sources import DATA_SOURCES

    for registry in (
        POLICIES,
        SCHEDULES,
        BENCHMARKS,
        STRATEGIES,
        OBJECTIVES,
        ADVANTAGES,
        ESTIMATORS,
        REWARDS,
        DATA_SOURCES,
    ):
        assert type(registry) is Registry and len(registry) > 0
