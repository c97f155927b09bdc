"""The experiment contract: a law that predicts, measures and is judged.

An :class:`Experiment` names itself, states its law in one sentence with its citation, declares a
config dataclass (a subclass of :class:`RunConfig`, defaults = the published setting scaled to a
CPU, ``quick`` = under a minute on 2 cores) and implements

* ``predict(config) -> Result``: the theory's numbers, computed without training;
* ``measure(config, progress) -> Result``: train and observe (a diverged run sets ``diverged_at``);
* ``verdict(config, prediction, measurement) -> list[Verdict]``: each criterion a stated metric
  against a stated tolerance;
* ``figures(config, prediction, measurement, outdir) -> list[Path]``: prediction and measurement
  drawn side by side.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from lmech.config import MAX_SEED, spec
from lmech.devices import resolve_device, resolve_dtype
from lmech.verdicts import VERDICT_STATES, overall_status, verdict_status  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class RunConfig:
    """Fields every experiment config has: the seed and where to run."""

    seed: int = spec(0, "seed from which everything random in the run derives", min=0, max=MAX_SEED)
    device: str = spec("cpu", "torch device: cpu, cuda, cuda:N or mps")

    def check(self) -> None:
        """Cross-field rules; subclasses extend. Device availability is checked here, before work."""
        resolve_device(self.device)
        if hasattr(self, "dtype"):
            resolve_dtype(self.dtype)


class Progress(Protocol):
    """Where long work reports progress (the CLI draws a rich bar; notebooks pass nothing)."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class NullProgress:
    """Progress that shows nothing."""

    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


@dataclass
class Result:
    """What ``predict`` or ``measure`` returns.

    ``series`` are tables (stored as Parquet), ``summary`` are scalars (columns of the runs table),
    ``arrays`` are in-memory extras for verdicts and figures (not stored). ``diverged_at`` is the
    step at which the loss became NaN/inf, if it did: the run is then recorded as ``diverged``.

    Wall-clock timings may be recorded in columns or summary keys named ``seconds`` or ending in
    ``_seconds``; they are the only values exempt from "same config and seed, same numbers".
    """

    series: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)
    diverged_at: int | None = None


def is_timing(name: str) -> bool:
    """True for the names reserved for wall-clock timings (see :class:`Result`)."""
    return name == "seconds" or name.endswith("_seconds")


def _plain(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if hasattr(value, "detach"):
        return value.detach().cpu().tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass
class Verdict:
    """One criterion of a law, judged by a stated metric against a stated tolerance.

    ``tolerance`` is a number (the law holds iff ``agreement <= tolerance``) or a pair ``(lo, hi)``
    (it holds iff ``lo <= agreement <= hi``). ``holds`` is computed here, never set by hand; a NaN
    agreement never holds.

    ``why`` justifies the tolerance (what sets it: the theory's finite-size error, the trials' standard
    error, the paper's own reported agreement, ...); the report shows it beside the number.

    ``inconclusive`` is the reason a precondition of the criterion was not met; the verdict's
    ``status`` is then ``"inconclusive"`` whatever the agreement (and ``holds`` is False): a criterion
    that was not tested neither holds nor is violated. Otherwise ``status`` is ``"holds"`` or
    ``"violated"``.
    """

    law: str
    statement: str
    citation: str
    key: str
    quantity: str
    predicted: Any
    measured: Any
    agreement: float
    tolerance: float | tuple[float, float]
    details: dict[str, Any] = field(default_factory=dict)
    inconclusive: str | None = None
    why: str = ""
    holds: bool = field(init=False)
    status: str = field(init=False)

    def __post_init__(self) -> None:
        self.agreement = float(self.agreement)
        self.predicted, self.measured = _plain(self.predicted), _plain(self.measured)
        if isinstance(self.tolerance, (tuple, list)):
            lo, hi = map(float, self.tolerance)
            self.tolerance = (lo, hi)
            within = bool(lo <= self.agreement <= hi)
        else:
            self.tolerance = float(self.tolerance)
            within = bool(self.agreement <= self.tolerance)
        if math.isnan(self.agreement):
            within = False
        if self.inconclusive:
            self.inconclusive = str(self.inconclusive)
            self.holds, self.status = False, "inconclusive"
        else:
            self.inconclusive = None
            self.holds, self.status = within, ("holds" if within else "violated")

    @property
    def comparison(self) -> str:
        if isinstance(self.tolerance, tuple):
            return f"in [{self.tolerance[0]:g}, {self.tolerance[1]:g}]"
        return f"<= {self.tolerance:g}"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["tolerance"] = list(self.tolerance) if isinstance(self.tolerance, tuple) else self.tolerance
        out["details"] = _plain(self.details)
        return out


@dataclass(frozen=True)
class Criterion:
    """A criterion a law judges, declared before anything runs (``lmech list NAME`` shows it).

    ``key`` is the verdict's key, ``quantity`` what is measured, ``tolerance`` a number (agreement <=
    tolerance) or a band ``(lo, hi)``, ``why`` the reason for the tolerance. A law that declares its
    criteria (:meth:`Experiment.criteria`) may leave ``tolerance`` and ``why`` out of
    :meth:`Experiment.make_verdict`: they are taken from here, so the declaration and the verdict cannot
    disagree.

    A criterion judged only at some configs (one model of several, say) states where it applies:
    ``when`` in words (``lmech list`` shows it) and ``applies(config) -> bool`` the test of a config; both
    or neither (neither: every config). One key may be declared more than once with disjoint
    applicability (a tolerance per model); :meth:`Experiment.criteria_for` is what a run at a config
    judges, and the contract checks every law-book entry's verdicts against it.
    """

    key: str
    quantity: str
    tolerance: float | tuple[float, float]
    why: str = ""
    when: str = ""
    applies: Callable[[RunConfig], bool] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if bool(self.when) != (self.applies is not None):
            raise ValueError(f"criterion {self.key!r}: give both when= (in words) and applies= (the test), "
                             "or neither")

    def applies_to(self, config: RunConfig) -> bool:
        """Whether a run at ``config`` judges this criterion."""
        return self.applies is None or bool(self.applies(config))

    def to_dict(self) -> dict[str, Any]:
        tol = list(self.tolerance) if isinstance(self.tolerance, tuple) else self.tolerance
        out = {"key": self.key, "quantity": self.quantity, "tolerance": tol, "why": self.why}
        return {**out, "when": self.when} if self.when else out


@dataclass(frozen=True)
class Counterexample:
    """A case in which the theory says the named criteria must come out ``expect`` (default violated).

    Falsifiability is part of the experiment contract: every criterion a law judges is named by at
    least one counterexample, and the shared contract test (``tests/test_contract.py``) checks, at
    seeds 0, 1 and 2, that each counterexample's criteria come out as expected. Two kinds:

    * ``config``: a config the law is run at (keep it cheap: it runs at every seed of the contract);
    * ``perturb``: a controlled perturbation of a measurement. ``perturb(config, prediction,
      measurement)`` returns a new measurement :class:`Result` (it must not modify its arguments),
      which is judged by ``verdict`` against the unchanged prediction; the measurement is that of the
      law-book entry ``entry`` (default: the first) at the seed under test.

    ``expect="inconclusive"`` declares a case whose precondition is unmet (the criterion must then be
    reported inconclusive, not judged). ``why`` says what the theory predicts there and why.
    """

    label: str
    criteria: tuple[str, ...]
    why: str
    config: RunConfig | None = None
    perturb: Callable[[RunConfig, Result, Result], Result] | None = None
    entry: str | None = None
    expect: str = "violated"

    def __post_init__(self) -> None:
        if (self.config is None) == (self.perturb is None):
            raise ValueError(f"counterexample {self.label!r}: give exactly one of config= or perturb=")
        if self.expect not in ("violated", "inconclusive"):
            raise ValueError(f"counterexample {self.label!r}: expect must be 'violated' or 'inconclusive'")
        if not self.criteria:
            raise ValueError(f"counterexample {self.label!r}: name the criteria it must flip")
        object.__setattr__(self, "criteria", tuple(self.criteria))


class Experiment(ABC):
    """A law of the law book. Subclasses set the class attributes and implement the four verbs."""

    name: ClassVar[str]
    law: ClassVar[str]  # one sentence
    citation: ClassVar[str]
    Config: ClassVar[type[RunConfig]]
    #: torch intra-op threads while this experiment runs (restored afterwards). Small models run fastest
    #: and reproducibly on one thread; fixing the count also fixes the order of parallel reductions.
    threads: ClassVar[int] = 1

    def default_config(self) -> RunConfig:
        """The published setting, scaled to a CPU."""
        return self.Config()

    @abstractmethod
    def quick_config(self) -> RunConfig:
        """A config that runs in under a minute on 2 cores and still tests the law."""

    def counterexamples(self) -> list[Counterexample]:
        """Cases in which the theory says criteria must be violated (see :class:`Counterexample`).

        Every criterion (verdict key) the law judges must be named by at least one of them: a law
        whose verdicts cannot fail does not pass the contract.
        """
        return []

    def criteria(self) -> Sequence[Criterion]:
        """The criteria this law judges (key, quantity, tolerance, why), readable before running it.

        Optional: a law that does not declare them returns none, and ``lmech list NAME`` then shows the
        criteria of its latest stored run, or the keys its counterexamples name. When declared, the
        verdicts of every run must match them (``tests/test_contract.py``); a criterion judged only at some
        configs says where (``Criterion.when``/``applies``).
        """
        return ()

    def criteria_for(self, config: RunConfig) -> list[Criterion]:
        """The declared criteria that a run at ``config`` judges (those that apply to it), one per key."""
        out = [c for c in self.criteria() if c.applies_to(config)]
        keys = [c.key for c in out]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ValueError(f"{self.name}: criteria {twice} are declared more than once for one config "
                             "(their applies= overlap)")
        return out

    def smoke_config(self) -> RunConfig:
        """A seconds-long config for the shared contract checks (determinism, seeds, figures).

        Defaults to the quick config; laws whose quick config takes tens of seconds shorten it here
        (fewer steps), which changes nothing about what the contract checks.
        """
        return self.quick_config()

    def lawbook(self, quick: bool = True) -> list[tuple[str, RunConfig]]:
        """The (label, config) entries ``lmech check`` runs for this law."""
        return [("", self.quick_config() if quick else self.default_config())]

    def label(self, config: RunConfig) -> str:
        """A short description of a config for tables (the fields that differ from the default)."""
        base = self.default_config()
        diffs = [f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config)
                 if getattr(config, f.name) != getattr(base, f.name) and f.name != "device"]
        return " ".join(diffs)

    @abstractmethod
    def predict(self, config: RunConfig) -> Result:
        """The theory's prediction for this config, computed without training."""

    @abstractmethod
    def measure(self, config: RunConfig, progress: Progress | None = None) -> Result:
        """Train and measure."""

    @abstractmethod
    def verdict(self, config: RunConfig, prediction: Result, measurement: Result) -> Sequence[Verdict]:
        """Judge the measurement against the prediction."""

    @abstractmethod
    def figures(self, config: RunConfig, prediction: Result, measurement: Result, outdir: Path) -> list[Path]:
        """Draw prediction and measurement side by side; return the PNG paths written."""

    def make_verdict(self, key: str, quantity: str, predicted: Any, measured: Any, agreement: float,
                     tolerance: float | tuple[float, float] | None = None, *, why: str = "",
                     inconclusive: str | None = None, **details: Any) -> Verdict:
        """A :class:`Verdict` of this law. ``why``: the reason for the tolerance (shown in the report);
        ``inconclusive``: the reason, when a precondition of the criterion was not met. ``tolerance`` and
        ``why`` left out are taken from the law's declared :meth:`criteria`."""
        if tolerance is None or not why:
            declared = [c for c in self.criteria() if c.key == key]
            if len(declared) > 1:  # one per config (Criterion.applies): the one with the tolerance given
                declared = [c for c in declared if tolerance is not None and _same(c.tolerance, tolerance)]
                if len(declared) != 1:
                    raise ValueError(f"{self.name}: criterion {key!r} is declared for several configs: give its "
                                     "tolerance (one of the declared ones)")
            if declared:
                tolerance = declared[0].tolerance if tolerance is None else tolerance
                why = why or declared[0].why
            elif tolerance is None:
                raise ValueError(f"{self.name}: criterion {key!r} has no tolerance (give one, or declare it "
                                 "in criteria())")
        return Verdict(law=self.name, statement=self.law, citation=self.citation, key=key, quantity=quantity,
                       predicted=predicted, measured=measured, agreement=agreement, tolerance=tolerance,
                       details=details, inconclusive=inconclusive, why=why)


def _same(a: float | tuple[float, float], b: float | tuple[float, float]) -> bool:
    """Whether two tolerances (numbers or bands) are the same."""
    pair = isinstance(a, (tuple, list))
    if pair != isinstance(b, (tuple, list)):
        return False
    return tuple(map(float, a)) == tuple(map(float, b)) if pair else float(a) == float(b)
