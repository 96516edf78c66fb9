"""Recipe language: parsing, presets, schedule arithmetic and error messages."""

import pytest

from dynbcdi.phasing.recipes import PRESETS, ShrinkWrap, Step, parse_recipe


def test_paper_preset_matches_methods():
    recipe = parse_recipe("paper")
    # Methods: HIO(0.9)/ER alternating every 50, 200 final ER, 1800 in all.
    assert recipe.n_iterations == 1800
    off = ("detwin_axis", -1)
    assert recipe.steps[0] == Step("hio", (("beta", 0.9), off), 50)
    assert recipe.steps[1] == Step("er", (off,), 50)
    assert recipe.steps[-1] == Step("er", (off,), 250)  # last ER**50 block merged with the final 200
    assert recipe.support_box == 0.5
    sw = recipe.shrinkwrap
    assert (sw.start, sw.every) == (100, 10)
    assert sw.sigma_at(100, 1800) == pytest.approx(sw.sigma)
    assert sw.sigma_at(1799, 1800) == pytest.approx(sw.sigma_end)
    assert "paper" in PRESETS and recipe.text == PRESETS["paper"]


def test_groups_powers_and_merging():
    recipe = parse_recipe("(hio**2, er)**3, ER**4, raar(beta=0.8), ml**5")
    names = [(s.name, s.count) for s in recipe.steps]
    assert names == [("hio", 2), ("er", 1), ("hio", 2), ("er", 1), ("hio", 2), ("er", 5), ("raar", 1), ("ml", 5)]
    assert recipe.n_iterations == 19
    assert recipe.shrinkwrap is None
    assert dict(recipe.steps[-2].params) == {"beta": 0.8, "detwin_axis": -1}


def test_detwin_parameter():
    recipe = parse_recipe("HIO(beta=0.8, detwin_axis=1)**20, ER**10")
    assert dict(recipe.steps[0].params) == {"beta": 0.8, "detwin_axis": 1.0}
    assert dict(recipe.steps[1].params) == {"detwin_axis": -1}


def test_shrinkwrap_schedule():
    sw = ShrinkWrap(start=100, every=10, stop=150)
    applied = [it for it in range(200) if sw.applies_after(it)]
    assert applied == [100, 110, 120, 130, 140]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "non-empty"),
        ("HIO(gamma=1)", "parameter of 'hio'"),
        ("FOO**3", "expected one of"),
        ("ER**0", "positive integer"),
        ("ER**2.5", "positive integer"),
        ("(ER, support(box=0.3))", "not allowed inside a group"),
        ("support(box=0.5)", "no algorithm"),
        ("support(box=1.5), ER", "box=1.5"),
        ("shrinkwrap(threshold=2), ER", "invalid shrinkwrap"),
        ("ER, ER ER", "',' or end"),
        ("(ER, HIO", "')'"),
        ("support(box=0.5), support(box=0.4), ER", "given twice"),
        ("HIO(detwin_axis=3)", "detwin_axis=3"),
        ("RAAR(beta=1.5)", "beta=1.5"),
    ],
)
def test_bad_recipes_raise(text, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        parse_recipe(text)
