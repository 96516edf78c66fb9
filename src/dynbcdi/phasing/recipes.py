"""One-line phase-retrieval recipes that read like the Methods sections that define them.

Grammar (whitespace and letter case ignored)::

    recipe := item ("," item)*
    item   := atom ["**" INT]
    atom   := NAME ["(" [key=value ("," key=value)*] ")"] | "(" recipe ")"

Items run **left to right** (unlike PyNX's right-to-left operator products), ``**n`` repeats an
item n times and parentheses group. Algorithms (each repetition is one iteration):

- ``ER``                      error reduction (Fienup 1982)
- ``HIO(beta=0.9)``           hybrid input-output
- ``RAAR(beta=0.75)``         relaxed averaged alternating reflections (Luke 2005)
- ``ML``                      Poisson maximum-likelihood conjugate gradient (final refinement)

``detwin_axis=k`` (k = 0, 1, 2) on ER/HIO/RAAR uses only the half of the support on the negative
side of the support's centre along axis k (PyNX's detwinning idea): for centrosymmetric crystal
shapes this breaks the object/twin symmetry that otherwise stalls a fraction of the starts.

Settings (top level only, at most once each, not repeatable):

- ``support(box=0.5)``        initial support: centred box, this fraction of the array per axis
- ``shrinkwrap(start=100, every=10, threshold=0.15, sigma=2, sigma_end=1, stop=-1)``
  support update after iteration ``it`` when ``it >= start``, ``(it - start) % every == 0`` and
  (``stop < 0`` or ``it < stop``); σ (voxels) goes linearly from ``sigma`` at ``start`` to
  ``sigma_end`` at the last iteration; threshold is a fraction of the blurred maximum.

``"paper"`` names the schedule of the seed paper's Methods (HIO β = 0.9 and ER alternating every 50
iterations, shrink-wrap from iteration 100 every 10, 200 final ER, 1800 iterations in all)::

    support(box=0.5), shrinkwrap(start=100, every=10, threshold=0.15, sigma=2, sigma_end=1),
    (HIO(beta=0.9)**50, ER**50)**16, ER**200

The threshold and σ schedule are not given in the paper; 0.1 and 2 → 1 voxel are our choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ALGORITHMS: dict[str, dict[str, float]] = {
    "er": {"detwin_axis": -1},
    "hio": {"beta": 0.9, "detwin_axis": -1},
    "raar": {"beta": 0.75, "detwin_axis": -1},
    "ml": {},
}
_SETTINGS: dict[str, dict[str, float]] = {
    "support": {"box": 0.5},
    "shrinkwrap": {"start": 100, "every": 10, "threshold": 0.1, "sigma": 2.0, "sigma_end": -1.0, "stop": -1},
}

PRESETS: dict[str, str] = {
    "paper": (
        "support(box=0.5), shrinkwrap(start=100, every=10, threshold=0.15, sigma=2, sigma_end=1), "
        "(HIO(beta=0.9)**50, ER**50)**16, ER**200"
    ),
    "paper+ml": (
        "support(box=0.5), shrinkwrap(start=100, every=10, threshold=0.15, sigma=2, sigma_end=1, stop=1800), "
        "(HIO(beta=0.9)**50, ER**50)**16, ER**200, ML**50"
    ),
}

_TOKEN = re.compile(r"\s*(?:(\*\*)|([A-Za-z_][A-Za-z_0-9]*)|([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(.))")


@dataclass(frozen=True)
class Step:
    """``count`` consecutive iterations of one algorithm (``name`` lower case, ``params`` dict items)."""

    name: str
    params: tuple[tuple[str, float], ...]
    count: int


@dataclass(frozen=True)
class ShrinkWrap:
    """Shrink-wrap schedule; iterations are counted from 0, σ in voxels."""

    start: int = 100
    every: int = 10
    threshold: float = 0.1
    sigma: float = 2.0
    sigma_end: float = 2.0
    stop: int = -1

    def applies_after(self, iteration: int) -> bool:
        """True when the support is updated after (0-based) ``iteration``."""
        in_window = iteration >= self.start and (self.stop < 0 or iteration < self.stop)
        return in_window and (iteration - self.start) % self.every == 0

    def sigma_at(self, iteration: int, n_iterations: int) -> float:
        """σ (voxels) at ``iteration``: linear from ``sigma`` at ``start`` to ``sigma_end`` at the end."""
        span = max(n_iterations - 1 - self.start, 1)
        frac = min(max((iteration - self.start) / span, 0.0), 1.0)
        return self.sigma + (self.sigma_end - self.sigma) * frac


@dataclass(frozen=True)
class Recipe:
    """Parsed recipe: the flat list of steps plus support settings; ``text`` is the source string."""

    text: str
    steps: tuple[Step, ...]
    support_box: float = 0.5
    shrinkwrap: ShrinkWrap | None = None

    @property
    def n_iterations(self) -> int:
        """Total number of iterations."""
        return sum(step.count for step in self.steps)


def parse_recipe(text: str) -> Recipe:
    """Parse a recipe string (or a preset name from :data:`PRESETS`) into a :class:`Recipe`.

    Raises ValueError naming the offending token for any syntax error, unknown algorithm or
    parameter, non-positive repeat count or an empty recipe.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"recipe must be a non-empty string, got {text!r}")
    source = PRESETS.get(text.strip().lower(), text)
    parser = _Parser(source)
    settings: dict[str, dict[str, float]] = {}
    steps: list[Step] = []
    while True:
        name, params, group = parser.atom()
        if name in _SETTINGS:
            if name in settings:
                raise ValueError(f"recipe setting {name!r} given twice in {source!r}")
            settings[name] = params
        else:
            steps.extend(_repeat(group if group is not None else [Step(name, _items(params), 1)], parser.power()))
        if not parser.accept(","):
            break
    parser.expect_end()
    if not steps:
        raise ValueError(f"recipe {source!r} contains no algorithm step")
    return _build(source, _merge(steps), settings)


def _build(source: str, steps: list[Step], settings: dict[str, dict[str, float]]) -> Recipe:
    for step in steps:
        params = dict(step.params)
        if params.get("detwin_axis", -1) not in (-1, 0, 1, 2):
            raise ValueError(f"{step.name}(detwin_axis={params['detwin_axis']}) must be -1 (off), 0, 1 or 2")
        if not 0 < params.get("beta", 0.5) <= 1:
            raise ValueError(f"{step.name}(beta={params['beta']}) must be in (0, 1]")
    box = settings.get("support", _SETTINGS["support"])["box"]
    if not 0 < box <= 1:
        raise ValueError(f"support(box={box}) must be in (0, 1]")
    shrinkwrap = None
    if "shrinkwrap" in settings:
        sw = settings["shrinkwrap"]
        sigma_end = sw["sigma"] if sw["sigma_end"] < 0 else sw["sigma_end"]
        shrinkwrap = ShrinkWrap(int(sw["start"]), int(sw["every"]), sw["threshold"], sw["sigma"], sigma_end, int(sw["stop"]))
        if shrinkwrap.every < 1 or not 0 < shrinkwrap.threshold < 1 or shrinkwrap.sigma <= 0 or sigma_end <= 0:
            raise ValueError(f"invalid shrinkwrap settings {sw} (need every>=1, 0<threshold<1, sigma>0)")
    return Recipe(source, tuple(steps), box, shrinkwrap)


def _items(params: dict[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(params.items()))


def _repeat(steps: list[Step], count: int) -> list[Step]:
    return [step for _ in range(count) for step in steps]


def _merge(steps: list[Step]) -> list[Step]:
    """Fold consecutive identical steps (``ER, ER**3`` → ``ER**4``)."""
    merged: list[Step] = []
    for step in steps:
        if merged and merged[-1].name == step.name and merged[-1].params == step.params:
            merged[-1] = Step(step.name, step.params, merged[-1].count + step.count)
        else:
            merged.append(step)
    return merged


class _Parser:
    """Recursive-descent parser over regex tokens (kind, text)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens: list[tuple[str, str]] = []
        for match in _TOKEN.finditer(source):
            power, name, number, other = match.groups()
            if power:
                self.tokens.append(("op", "**"))
            elif name:
                self.tokens.append(("name", name.lower()))
            elif number:
                self.tokens.append(("number", number))
            elif other and not other.isspace():
                self.tokens.append(("op", other))
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def accept(self, text: str) -> bool:
        if self.peek() == ("op", text):
            self.pos += 1
            return True
        return False

    def fail(self, expected: str) -> ValueError:
        return ValueError(f"recipe {self.source!r}: expected {expected}, got {self.peek()[1] or 'end'!r}")

    def expect_end(self) -> None:
        if self.peek()[0] != "end":
            raise self.fail("',' or end of recipe")

    def power(self) -> int:
        if not self.accept("**"):
            return 1
        kind, text = self.peek()
        if kind != "number" or not text.isdigit() or int(text) < 1:
            raise self.fail("a positive integer after '**'")
        self.pos += 1
        return int(text)

    def atom(self) -> tuple[str, dict[str, float], list[Step] | None]:
        """Return (name, params, None) for a named item or ("", {}, steps) for a group."""
        if self.accept("("):
            steps: list[Step] = []
            while True:
                name, params, group = self.atom()
                if name in _SETTINGS:
                    raise ValueError(f"recipe {self.source!r}: setting {name!r} is not allowed inside a group")
                steps.extend(_repeat(group if group is not None else [Step(name, _items(params), 1)], self.power()))
                if not self.accept(","):
                    break
            if not self.accept(")"):
                raise self.fail("')'")
            return "", {}, steps
        kind, name = self.peek()
        known = {**_ALGORITHMS, **_SETTINGS}
        if kind != "name" or name not in known:
            raise self.fail(f"one of {sorted(known)}")
        self.pos += 1
        params = dict(known[name])
        if self.accept("(") and not self.accept(")"):
            self._arguments(name, params)
        return name, params, None

    def _arguments(self, name: str, params: dict[str, float]) -> None:
        while True:
            kind, key = self.peek()
            if kind != "name" or key not in params:
                raise self.fail(f"a parameter of {name!r} ({sorted(params)})")
            self.pos += 1
            if not self.accept("="):
                raise self.fail("'='")
            kind, value = self.peek()
            if kind != "number":
                raise self.fail(f"a number for {name}({key}=...)")
            self.pos += 1
            params[key] = float(value)
            if self.accept(")"):
                return
            if not self.accept(","):
                raise self.fail("',' or ')'")
