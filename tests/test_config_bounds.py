"""Validation lets no impossible run start (issue 12, item 8).

Every numeric field of every registered law is fuzzed with huge, tiny and odd values: a value the
machine cannot hold is refused with :class:`BadInput` naming the field, before any work (validation
alone, in milliseconds); integers parse exactly; ``-0`` and ``0`` are one run.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import pytest

from lmech import experiments
from lmech.cli import main
from lmech.config import MAX_SEED, apply_overrides, field_types, parse_value, to_dict, validate
from lmech.errors import BadInput
from lmech.store import run_id

HUGE = ("1e30", "1e308", str(2**63), "9" * 60, "1e400")
TINY_OR_ODD = ("5e-324", "-1", "-1e308", "-0", "0", "0.5", "nan", "inf", "-inf", "1e-300")


def _numeric_fields(cls: type) -> list[tuple[str, typing.Any, bool]]:
    out = []
    for name, tp in field_types(cls).items():
        tup = typing.get_origin(tp) is tuple
        inner = typing.get_args(tp)[0] if tup else tp
        if inner in (int, float):
            out.append((name, inner, tup))
    return out


CASES = [(name, field, inner, tup) for name in experiments.names()
         for field, inner, tup in _numeric_fields(experiments.get(name).Config)]


def _base(name: str):
    return experiments.get(name).quick_config()


@pytest.mark.parametrize("name,field,inner,tup", CASES, ids=[f"{c[0]}.{c[1]}" for c in CASES])
def test_every_numeric_field_declares_its_bound(name, field, inner, tup):
    meta = {f.name: f.metadata for f in dataclasses.fields(experiments.get(name).Config)}[field]
    assert meta.get("max") is not None, f"{name}.{field} has no max: bound it by what the machine can hold"


@pytest.mark.parametrize("name,field,inner,tup", CASES, ids=[f"{c[0]}.{c[1]}" for c in CASES])
def test_huge_values_are_refused_before_any_work(name, field, inner, tup):
    base = _base(name)
    for text in HUGE:
        start = time.perf_counter()
        with pytest.raises(BadInput) as info:
            apply_overrides(base, [f"{field}={text}"])
        assert time.perf_counter() - start < 2.0, f"{name}.{field}={text}: validation did work"
        assert field in str(info.value) or "key" not in str(info.value)
    if tup:  # a list too long to hold is refused, whatever its entries
        with pytest.raises(BadInput, match="at most"):
            apply_overrides(base, [f"{field}=" + ",".join(["1"] * 1000)])


@pytest.mark.parametrize("name,field,inner,tup", CASES, ids=[f"{c[0]}.{c[1]}" for c in CASES])
def test_tiny_and_odd_values_are_refused_or_accepted_quickly(name, field, inner, tup):
    """Each value either gives BadInput (exit 2) or a valid config; never another exception."""
    base = _base(name)
    for text in TINY_OR_ODD:
        start = time.perf_counter()
        try:
            config = apply_overrides(base, [f"{field}={text}"])
        except BadInput:
            pass
        else:
            assert validate(config) == config
        assert time.perf_counter() - start < 2.0, f"{name}.{field}={text}: validation did work"


@pytest.mark.parametrize("name", experiments.names())
def test_the_shipped_configs_are_within_the_bounds(name):
    exp = experiments.get(name)
    configs = [exp.default_config(), exp.quick_config(), exp.smoke_config()]
    configs += [c for _, c in exp.lawbook(True)] + [c for _, c in exp.lawbook(False)]
    configs += [c.config for c in exp.counterexamples() if c.config is not None]
    for config in configs:
        for seed in (0, 1, 2):
            validate(dataclasses.replace(config, seed=seed))


@pytest.mark.parametrize("name,overrides", [
    ("deep-linear", ["lr=5e-324"]),  # the run length horizon·t½/lr would be ~1e320 steps
    ("deep-linear", ["horizon=1e308"]),
    ("deep-linear", ["steps=1e30"]),
    ("deep-linear", ["init_noise=1e308"]),
    ("deep-linear", ["seed=1e30"]),
    ("edge-of-stability", ["width=1e30"]),
    ("edge-of-stability", ["depth=1e9"]),
    ("edge-of-stability", ["dataset=chebyshev", "width=1", "depth=1", "top_k=5", "lanczos_max_iter=10"]),
    ("edge-of-stability-adam", ["lrs="]),  # Adam with no learning rate at all
    ("eigenlearning", ["in_features=100000"]),
    ("ntk-convergence", ["seeds=1e30"]),
    ("linearized-training", ["widths=128,65536", "depth=6"]),  # 21 G parameters
    ("linearized-training", ["steps=1000000"]),  # 10^10 rows of test outputs
])
def test_the_reported_attacks_are_refused(name, overrides):
    with pytest.raises(BadInput) as info:
        apply_overrides(_base(name), overrides)
    assert "invalid: expected" in str(info.value)


def test_integers_parse_exactly_and_minus_zero_is_zero():
    cls = experiments.get("deep-linear").Config
    assert parse_value(cls, "seed", "9007199254740993") == 9007199254740993  # not ...992 (a float's)
    assert parse_value(cls, "seed", "1e3") == 1000 and parse_value(cls, "seed", "2.0") == 2
    with pytest.raises(BadInput):
        parse_value(cls, "seed", "2.5")
    base = experiments.get("deep-linear").quick_config()
    ids = {s: run_id("deep-linear", to_dict(apply_overrides(base, [f"seed={s}"])))
           for s in ("9007199254740993", "9007199254740992")}
    assert len(set(ids.values())) == 2
    a = run_id("deep-linear", to_dict(apply_overrides(base, ["seed=-0", "init_noise=-0.0"])))
    b = run_id("deep-linear", to_dict(apply_overrides(base, ["seed=0", "init_noise=0"])))
    assert a == b
    c = run_id("deep-linear", to_dict(apply_overrides(base, {"init_noise": -0.0})))
    assert c == b
    assert apply_overrides(base, {"seed": MAX_SEED}).seed == MAX_SEED  # exact, not rounded through a float
    with pytest.raises(BadInput, match=str(MAX_SEED)):
        apply_overrides(base, {"seed": 2**64 - 1})


def test_cli_refuses_a_seed_beyond_the_bound_with_exit_2(tmp_path, capsys):
    code = main(["run", "deep-linear", "--quick", "--store", str(tmp_path), "--seed", str(2**64 - 1)])
    assert code == 2
    assert "seed" in capsys.readouterr().err
    assert not (tmp_path / "deep-linear").exists()
