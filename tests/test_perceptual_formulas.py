"""FID and Inception Score formulas against independent computations (scipy), on synthetic features. Core install."""

import numpy as np
import pytest
from scipy import linalg, stats
from scipy.special import softmax

from sr_models.evaluation.perceptual import RunningGaussian, frechet_distance, inception_score, parse_metrics, patches


def pytorch_fid_reference(mu1, sigma1, mu2, sigma2):
    """pytorch-fid's calculate_frechet_distance: scipy's sqrtm of S1 S2 (real part)."""
    covmean = linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def random_gaussian(rng, dim, samples):
    features = rng.normal(size=(samples, dim)) @ rng.normal(size=(dim, dim)) + rng.normal(size=dim)
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


@pytest.mark.parametrize("dim", [1, 5, 64])
def test_frechet_distance_matches_scipy_sqrtm(dim):
    rng = np.random.default_rng(dim)
    a, b = random_gaussian(rng, dim, 500), random_gaussian(rng, dim, 500)
    assert frechet_distance(*a, *b) == pytest.approx(pytorch_fid_reference(*a, *b), rel=1e-9)
    assert frechet_distance(*a, *a) == pytest.approx(0, abs=1e-8 * np.trace(a[1]))


def test_frechet_distance_of_one_dimensional_gaussians_is_closed_form():
    # For N(m1, s1^2) and N(m2, s2^2): (m1 - m2)^2 + (s1 - s2)^2.
    assert frechet_distance(1.0, 4.0, -2.0, 9.0) == pytest.approx(9 + 1)


def test_frechet_distance_with_fewer_samples_than_features_stays_real_and_finite():
    rng = np.random.default_rng(0)
    a, b = random_gaussian(rng, 50, 20), random_gaussian(rng, 50, 20)  # both covariances of rank 19
    value = frechet_distance(*a, *b)
    # sqrtm of a singular product still exists; scipy agrees to a looser tolerance there
    assert np.isfinite(value) and value == pytest.approx(pytorch_fid_reference(*a, *b), rel=1e-6)


def test_running_gaussian_equals_numpy_cov_on_chunks():
    features = np.random.default_rng(1).normal(size=(301, 7)) * 3 + 10
    running = RunningGaussian()
    for chunk in np.array_split(features, 4):
        running.add(chunk)
    mean, cov = running.stats()
    np.testing.assert_allclose(mean, features.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(features, rowvar=False), rtol=1e-9)


def test_inception_score_matches_scipy_entropy():
    logits = np.random.default_rng(2).normal(size=(103, 1008)) * 4
    probs = softmax(logits, axis=1)
    scores = []
    for i in range(10):  # the original code's consecutive splits of N // 10
        part = probs[i * 103 // 10 : (i + 1) * 103 // 10]
        marginal = part.mean(axis=0)
        scores.append(np.exp(np.mean([stats.entropy(p, marginal) for p in part])))
    mean, std = inception_score(logits)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert std == pytest.approx(np.std(scores), rel=1e-8)


def test_inception_score_bounds():
    # One confident, distinct class per sample: IS = number of classes per split; all the same class: IS = 1.
    distinct = np.full((40, 40), -1e4)
    distinct[np.arange(40), np.arange(40)] = 0
    assert inception_score(distinct, splits=4)[0] == pytest.approx(10)
    assert inception_score(np.zeros((40, 8)), splits=4)[0] == pytest.approx(1)


def test_patches_are_the_non_overlapping_tiles_from_the_top_left():
    image = np.arange(10 * 13 * 3, dtype=np.int64).reshape(10, 13, 3)
    cut = patches(image, 4)
    assert cut.shape == (2 * 3, 4, 4, 3)
    np.testing.assert_array_equal(cut[4], image[4:8, 4:8])  # row 1, column 1
    np.testing.assert_array_equal(cut[2], image[0:4, 8:12])


def test_parse_metrics_names_the_unknown():
    assert parse_metrics("psnr, LPIPS,fid,psnr") == ("psnr", "lpips", "fid")
    with pytest.raises(ValueError, match="unknown metric.*niqe.*choose from psnr,ssim,lpips,fid,is"):
        parse_metrics("psnr,niqe")
