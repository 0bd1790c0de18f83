import math

import numpy as np
import pytest
import torch
from skimage import filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import roc_auc_score

from secbench.data import load_dataset
from secbench.imageops import add_gaussian_noise, add_rain, edge_mask, luma, sobel_magnitude
from secbench.metrics import PSNR_CAP_DB, auroc, normalized_correlation, psnr, ssim, success_rate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """16 natural 64×64 patches, float (N, 3, H, W) in [0, 1]."""
    data = load_dataset("patches", n_train=8, n_test=8, patch_size=64)
    return torch.cat([data.train.floats(), data.test.floats()])


@pytest.fixture(scope="module")
def degraded(photos: torch.Tensor) -> torch.Tensor:
    """The photos under a mix of mild and strong degradations, quantised to 8 bits like stored outputs."""
    g = torch.Generator().manual_seed(0)
    noisy = add_gaussian_noise(photos[:8], sigma=0.03, generator=g)
    rainy = add_rain(photos[8:], generator=g)
    return (torch.cat([noisy, rainy]) * 255).round() / 255


def _step(height: float, width: int = 16, column: int = 8) -> torch.Tensor:
    """A gray image whose luma jumps by ``height`` (0-255 scale) between ``column - 1`` and ``column``."""
    image = torch.full((1, 3, 12, width), 0.2)
    image[..., column:] += height / 255
    return image


# --- PSNR / SSIM against scikit-image ----------------------------------------------------------------


def test_psnr_matches_scikit_image(photos, degraded):
    ours = psnr(photos, degraded)
    theirs = [peak_signal_noise_ratio(p.double().numpy(), d.double().numpy(), data_range=1.0)
              for p, d in zip(photos, degraded, strict=True)]
    assert ours.shape == (16,)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-9)
    assert 10 < ours.min() < ours.max() < 60  # the degradations span a realistic range


def test_psnr_of_identical_images_is_capped_and_data_range_scales(photos):
    assert torch.equal(psnr(photos, photos), torch.full((16,), PSNR_CAP_DB, dtype=torch.float64))
    x = photos.double()  # float64 so that scaling by 255 is exact enough to compare
    shifted = (x + 0.01).clamp(0, 1)
    torch.testing.assert_close(psnr(x * 255, shifted * 255, data_range=255), psnr(x, shifted))


def test_ssim_matches_scikit_image(photos, degraded):
    ours = ssim(photos, degraded)
    theirs = [
        structural_similarity(p.double().numpy(), d.double().numpy(), channel_axis=0, gaussian_weights=True,
                              sigma=1.5, use_sample_covariance=False, data_range=1.0)
        for p, d in zip(photos, degraded, strict=True)
    ]
    assert ours.shape == (16,)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-9)
    assert 0.1 < ours.min() < ours.max() < 0.99
    torch.testing.assert_close(ssim(photos, photos), torch.ones(16, dtype=torch.float64))


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.zeros(1, 3, 10, 32), torch.zeros(1, 3, 10, 32))


def test_metrics_are_differentiable(photos, degraded):
    x = degraded.clone().requires_grad_(True)
    (psnr(photos, x).sum() + ssim(photos, x).sum() + normalized_correlation(photos, x).sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# --- NC and success rate -----------------------------------------------------------------------------


def test_normalized_correlation_identities():
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ones = torch.ones(5, dtype=torch.float64)
    torch.testing.assert_close(normalized_correlation(x, x), ones)
    torch.testing.assert_close(normalized_correlation(x, -x), -ones)
    torch.testing.assert_close(normalized_correlation(3.7 * x, 0.2 * y), normalized_correlation(x, y))
    expected = [float(a @ b / (a.norm() * b.norm())) for a, b in zip(x.flatten(1), y.flatten(1), strict=True)]
    np.testing.assert_allclose(normalized_correlation(x, y).numpy(), expected, rtol=1e-6)


def test_normalized_correlation_of_a_blank_is_zero_with_finite_gradient():
    x = torch.rand(2, 3, 4, 4)
    blank = torch.zeros(2, 3, 4, 4, requires_grad=True)
    nc = normalized_correlation(x, blank)
    assert torch.equal(nc, torch.zeros(2, dtype=torch.float64))
    nc.sum().backward()
    assert torch.isfinite(blank.grad).all()
    assert normalized_correlation(blank, blank).tolist() == [0.0, 0.0]


def test_success_rate_counts_values_at_or_above_the_threshold():
    nc = torch.tensor([0.99, 0.95, 0.949, float("nan"), 0.2])
    assert success_rate(nc) == pytest.approx(2 / 5)
    assert success_rate(nc, threshold=0.1) == pytest.approx(4 / 5)
    with pytest.raises(ValueError):
        success_rate(torch.tensor([]))


# --- AUROC -------------------------------------------------------------------------------------------


def test_auroc_matches_sklearn_with_ties():
    g = torch.Generator().manual_seed(0)
    for n_pos, n_neg, shift in ((50, 70, 0.5), (7, 300, 0.0), (200, 3, -0.3)):
        pos = (torch.randn(n_pos, generator=g) + shift).round(decimals=1)  # rounding makes many ties
        neg = torch.randn(n_neg, generator=g).round(decimals=1)
        expected = roc_auc_score(np.r_[np.ones(n_pos), np.zeros(n_neg)], np.r_[pos.numpy(), neg.numpy()])
        assert auroc(pos, neg) == pytest.approx(expected, abs=1e-12)


def test_auroc_extremes_and_chance():
    low, high = torch.rand(40), torch.rand(60) + 1
    assert auroc(high, low) == 1.0 and auroc(low, high) == 0.0
    assert auroc(torch.full((5,), 0.3), torch.full((9,), 0.3)) == 0.5  # all tied: counted half
    g = torch.Generator().manual_seed(1)
    assert auroc(torch.randn(2000, generator=g), torch.randn(2000, generator=g)) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError):
        auroc(torch.tensor([]), low)


# --- luma, Sobel, edge mask --------------------------------------------------------------------------


def test_luma_uses_bt601_weights():
    primaries = torch.eye(3).view(3, 3, 1, 1).expand(3, 3, 2, 2)
    torch.testing.assert_close(luma(primaries)[:, 0, 0, 0], torch.tensor([0.299, 0.587, 0.114]))
    assert luma(primaries).shape == (3, 1, 2, 2)


def test_flat_images_have_no_edges_and_finite_gradients():
    flat = torch.rand(4, 3, 1, 1).expand(4, 3, 16, 16).clone().requires_grad_(True)
    magnitude = sobel_magnitude(flat)
    assert magnitude.shape == (4, 1, 16, 16) and torch.equal(magnitude, torch.zeros_like(magnitude))
    assert not edge_mask(flat).any()
    magnitude.sum().backward()
    assert torch.isfinite(flat.grad).all()


def test_step_edge_is_marked_on_the_two_columns_beside_it():
    # scikit-image's normalised Sobel gives h / √2 on both columns beside a step of height h (0-255)
    magnitude = sobel_magnitude(_step(100.0))[0, 0]
    torch.testing.assert_close(magnitude[:, 7:9], torch.full((12, 2), 100 / math.sqrt(2)), atol=1e-3, rtol=0)
    assert torch.equal(magnitude[:, :7], torch.zeros(12, 7)) and torch.equal(magnitude[:, 9:], torch.zeros(12, 7))
    mask = edge_mask(_step(40.0))[0, 0]  # 40 / √2 = 28.3 > 28
    expected = torch.zeros(12, 16, dtype=torch.bool)
    expected[:, 7:9] = True
    assert mask.dtype == torch.bool and torch.equal(mask, expected)  # rows at the border too (replicated)
    assert not edge_mask(_step(39.0)).any()  # 39 / √2 = 27.6 < 28


def test_threshold_is_on_the_0_255_scale_and_strict():
    image = _step(100.0)  # 70.71 on the edge columns
    assert edge_mask(image, threshold=70.0).sum() == 24
    assert not edge_mask(image, threshold=71.0).any()
    assert edge_mask(image, threshold=0.0).sum() == 24  # strictly above: flat pixels (0) never count


def test_sobel_and_mask_match_poison_inks_scikit_image_recipe(photos):
    # Poison Ink: filters.sobel(0.299 R + 0.587 G + 0.114 B on 0-255) > 28
    rgb = photos.double().numpy() * 255
    reference = np.stack([filters.sobel(0.299 * im[0] + 0.587 * im[1] + 0.114 * im[2]) for im in rgb])
    ours = sobel_magnitude(photos)[:, 0].double().numpy()
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-3)  # float32 inputs
    mask = edge_mask(photos)[:, 0].numpy()
    decided = np.abs(reference - 28) > 1e-3  # pixels that float32 rounding could not flip
    assert np.array_equal(mask[decided], reference[decided] > 28)
    assert 0.02 < mask.mean() < 0.5  # natural patches have some, not mostly, structure


# --- degradations ------------------------------------------------------------------------------------


def test_rain_is_deterministic_bright_and_in_range(photos):
    def rain(seed: int, **kwargs) -> torch.Tensor:
        return add_rain(photos, generator=torch.Generator().manual_seed(seed), **kwargs)

    first = rain(0)
    assert first.shape == photos.shape and first.dtype == photos.dtype
    assert torch.equal(first, rain(0)) and not torch.equal(first, rain(1))
    assert 0 <= first.min() and first.max() <= 1
    assert (first >= photos).all()  # rain only adds light
    changed = (first - photos).abs().amax(1) > 1 / 255
    assert (changed.flatten(1).float().mean(1) > 0.01).all()  # every image got rain
    sparse = (rain(0, density=(0.002, 0.002)) != photos).float().mean()
    dense = (rain(0, density=(0.02, 0.02)) != photos).float().mean()
    assert dense > 2 * sparse > 0


def test_rain_streaks_follow_the_angle():
    black = torch.zeros(1, 3, 64, 64)
    vertical = add_rain(black, generator=torch.Generator().manual_seed(0), density=(0.002, 0.002),
                        length=(15.0, 15.0), angle=(0.0, 0.0), brightness=(1.0, 1.0))[0, 0]
    # vertical streaks: neighbours in a column are far more alike than neighbours in a row
    assert (vertical[1:] - vertical[:-1]).abs().sum() < 0.5 * (vertical[:, 1:] - vertical[:, :-1]).abs().sum()


def test_gaussian_noise_has_the_requested_sigma():
    gray = torch.full((4, 3, 64, 64), 0.5)
    noisy = add_gaussian_noise(gray, sigma=0.1, generator=torch.Generator().manual_seed(0))
    residual = noisy - gray
    assert residual.std().item() == pytest.approx(0.1, rel=0.02)
    assert abs(residual.mean().item()) < 0.003
    again = add_gaussian_noise(gray, sigma=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    assert torch.equal(add_gaussian_noise(gray, sigma=0.0, generator=torch.Generator()), gray)
    assert add_gaussian_noise(torch.zeros(1, 3, 8, 8), sigma=0.5, generator=torch.Generator()).min() == 0
