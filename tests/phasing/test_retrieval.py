"""phase_retrieval end to end: convergence to the truth, noise, masks, seeds, validation."""

import numpy as np
import pytest
import torch

from dynbcdi.phasing import phase_retrieval

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)  # 2 threads on the shared, loaded 2-core machine ran 30× slower (spinning)


def _skip_without(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")


@pytest.mark.parametrize("device", DEVICES)
def test_paper_recipe_recovers_noise_free_crystal(device, crystal, intensity, scorer):
    """Full 1800-iteration paper schedule (≈1 s per start on 32³), best of 4 starts.

    Issue 5 targets: phase RMS < 0.02 rad, amplitude error < 2 %. The residual (≈0.01 rad, ≈1.2 %)
    is set by shrink-wrap trimming the partial-amplitude edge voxels of the faceted crystal, not by
    the iterations (the final Fourier error stalls at ≈0.006 = the truth energy left outside S).
    """
    _skip_without(device)
    result = phase_retrieval(intensity, None, recipe="paper", n_starts=4, seed=0, device=device)
    phase_rms, amp_err = scorer(result.obj, result.support, crystal)
    assert phase_rms < 0.02
    assert amp_err < 0.02
    assert result.final_error == pytest.approx(min(result.start_errors))
    assert result.error.shape == (1800,) and not result.interrupted
    assert result.seeds == (0, 1, 2, 3)


# Starts for the noise test. The bound below is on a *converged* start; on this crystal (its shape
# is centrosymmetric, so the support cannot tell object from twin) the paper schedule leaves many
# starts in the object + twin superposition (phase RMS ≈ 0.23 rad, amplitude error ≈ 0.31, final
# Fourier error ≈ 0.045 vs 0.0065 converged). Measured per-start convergence, seeds 0–15: 4/16 at
# 1e9 photons, 6/16 at 1e8 (7/16 noise-free). Which starts converge is decided by float32 rounding
# (the FFT kernels differ between CPUs; complex128 flips seeds 2 and 3 at 1e9), not by the seed, so
# the count is set by the chance that every start stalls: 0.75⁴ ≈ 32 % with 4 starts, 0.75¹⁶ ≈ 1 %.
NOISE_STARTS = 16


@pytest.mark.slow
@pytest.mark.parametrize("photons", [1e8, 1e9])
def test_poisson_noise_error_bound(photons, crystal, intensity, scorer):
    """Bound: noise-free floor (0.02 rad / 2 %) + noise term, with noise term ≤ 0.01.

    Poisson amplitude noise is ≈ 1/2 per pixel (√I ± 1/2) whatever I, so by Parseval the relative
    object error is ≤ sqrt(n_pix / (4 n_photons)) = sqrt(32³ / 4e8) ≈ 0.009 at 1e8 photons
    (0.003 at 1e9); the support projection keeps only a fraction of it. Bounds: 0.03 rad, 3 %.
    The bound is on a converged start; see ``NOISE_STARTS`` for why 16 starts (≈2 s each on 32³).
    """
    scale = photons / intensity.sum()
    noisy = np.random.default_rng(1).poisson(intensity * scale).astype(float)
    result = phase_retrieval(noisy, None, recipe="paper", n_starts=NOISE_STARTS, seed=0)
    phase_rms, amp_err = scorer(result.obj / np.sqrt(scale), result.support, crystal)
    assert phase_rms < 0.03
    assert amp_err < 0.03
    # Poisson deviance per pixel of a fit at the noise level is O(1), far below a wrong solution.
    assert result.llk < 5


def test_masked_gap_floats_freely(crystal, intensity, scorer):
    """A 2-column detector gap next to the Bragg peak: the masked pixels are left free and the
    object is still recovered (tolerance 2× the unmasked one: the gap removes ≈6 % of the signal)."""
    valid = np.ones(intensity.shape[1:], bool)
    valid[:, 18:20] = False
    corrupted = intensity.copy()
    corrupted[:, ~valid] = 1e9  # garbage under the mask must not matter
    result = phase_retrieval(corrupted, valid, recipe="paper", n_starts=4, seed=0)
    phase_rms, amp_err = scorer(result.obj, result.support, crystal)
    assert phase_rms < 0.04
    assert amp_err < 0.04


def test_result_is_centred_and_reproducible(intensity):
    recipe = "shrinkwrap(start=20, every=10), (HIO**20, ER**20)**2, ER**20"
    first = phase_retrieval(intensity, None, recipe=recipe, seed=5)
    again = phase_retrieval(intensity, None, recipe=recipe, seed=5)
    other = phase_retrieval(intensity, None, recipe=recipe, seed=6)
    np.testing.assert_array_equal(first.obj, again.obj)
    assert not np.allclose(first.obj, other.obj)
    com = np.array(np.nonzero(first.support)).mean(axis=1)
    assert np.all(np.abs(com - 16) <= 0.5)  # integer centring: within half a voxel
    assert abs(np.angle(first.obj[first.support].sum())) < 1e-5
    assert first.error.shape == (100,) and first.recipe == recipe


def test_progress_callback_can_stop(intensity):
    seen = []

    def progress(info):
        seen.append(info.iteration)
        return info.iteration >= 30

    result = phase_retrieval(intensity, None, recipe="HIO**50, ER**50", progress=progress, n_starts=3)
    assert result.interrupted
    assert seen == [10, 20, 30]
    assert result.error.shape == (30,)
    assert len(result.seeds) == 1  # the remaining starts are skipped


@pytest.mark.parametrize(
    "intensity_fn, valid_fn, fragment",
    [
        (lambda i: i[0], lambda v: v, "shape"),
        (lambda i: np.where(i > 1e3, np.nan, i), lambda v: v, "finite"),
        (lambda i: i - 1.0, lambda v: v, ">= 0"),
        (lambda i: np.zeros_like(i), lambda v: v, "zero on every valid"),
        (lambda i: i, lambda v: np.zeros_like(v), "hides every pixel"),
        (lambda i: i, lambda v: v[:-1], "matches neither"),
        (lambda i: i, lambda v: v.astype(int), "bool"),
    ],
)
def test_invalid_input_raises(intensity, intensity_fn, valid_fn, fragment):
    valid = np.ones(intensity.shape[1:], bool)
    with pytest.raises(ValueError, match=fragment):
        phase_retrieval(intensity_fn(intensity), valid_fn(valid), recipe="ER**2")


def test_invalid_options_raise(intensity):
    with pytest.raises(ValueError, match="n_starts"):
        phase_retrieval(intensity, None, n_starts=0)
    with pytest.raises(ValueError, match="dtype"):
        phase_retrieval(intensity, None, dtype=torch.float32)
    with pytest.raises(ValueError, match="expected"):
        phase_retrieval(intensity, None, recipe="XYZ**3")


def test_ml_refinement_lowers_poisson_deviance(intensity):
    """Same seed, same first 350 iterations; 20 Poisson-ML steps after them cannot raise the deviance
    (exact line search along a descent direction) and on noisy data they lower it."""
    noisy = np.random.default_rng(2).poisson(intensity * (1e8 / intensity.sum())).astype(float)
    base = "shrinkwrap(start=100, every=10, stop=350), (HIO**50, ER**50)**3, ER**50"
    plain = phase_retrieval(noisy, None, recipe=base, seed=0)
    refined = phase_retrieval(noisy, None, recipe=base + ", ML**20", seed=0)
    assert refined.error.shape == (370,)
    assert refined.llk < plain.llk
