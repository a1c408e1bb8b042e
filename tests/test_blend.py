import cv2
import numpy as np
import pytest

from fmkit.data import blend

# MTCNN's five landmarks and box on scikit-image's astronaut (512 × 512) and matplotlib's
# grace_hopper.jpg (512 wide, 600 high), rounded: fixed here so these tests need no detector.
ASTRONAUT_LM = np.float32([[205.0, 101.7], [246.8, 103.7], [224.7, 129.0], [201.7, 139.2], [245.3, 141.9]])
ASTRONAUT_BOX = np.float32([181, 62, 268, 172])
HOPPER_LM = np.float32([[221.7, 192.2], [309.8, 186.1], [269.4, 239.2], [232.7, 279.6], [306.6, 275.9]])


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


def test_hull_mask_is_binary_covers_the_landmarks_and_stays_in_the_box():
    mask = blend.hull_mask((512, 512), ASTRONAUT_LM, ASTRONAUT_BOX)
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    assert set(np.unique(mask)) == {0.0, 1.0}
    for x, y in np.round(ASTRONAUT_LM).astype(int):
        assert mask[y, x] == 1
    x1, y1, x2, y2 = ASTRONAUT_BOX.astype(int)
    assert mask[:y1].sum() == 0 and mask[y2:].sum() == 0 and mask[:, :x1].sum() == 0 and mask[:, x2:].sum() == 0
    # an inner-face hull: larger than the landmarks' own hull, smaller than the box
    own = np.zeros((512, 512), np.uint8)
    cv2.fillConvexPoly(own, cv2.convexHull(np.round(ASTRONAUT_LM).astype(np.int32)), 1)
    assert own.sum() * 2 < mask.sum() < (x2 - x1) * (y2 - y1)
    assert blend.hull_mask((512, 512), ASTRONAUT_LM, expand=1.2).sum() > blend.hull_mask((512, 512), ASTRONAUT_LM).sum()
    eyes_y = 100  # a box whose top edge cuts the hull at the eyes
    assert blend.hull_mask((512, 512), ASTRONAUT_LM)[:eyes_y].sum() > 0
    assert blend.hull_mask((512, 512), ASTRONAUT_LM, np.float32([181, eyes_y, 268, 172]))[:eyes_y].sum() == 0


def test_soft_mask_is_in_unit_range_eroded_and_blurred():
    hard = blend.hull_mask((256, 256), ASTRONAUT_LM - [100, 20])
    soft = blend.soft_mask(hard, erode=6, sigma=4)
    assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
    assert ((soft > 0) & (soft < 1)).sum() > 100, "the blur must make a soft edge"
    assert soft.sum() < hard.sum(), "erosion must shrink the mask"
    assert soft.max() == pytest.approx(1.0)
    assert soft[hard == 0].max() < 0.5
    dilated = blend.soft_mask(hard, erode=-6)
    assert dilated.sum() > hard.sum() and set(np.unique(dilated)) == {0.0, 1.0}


def test_blend_mask_peaks_at_the_blend_ratio():
    params = blend.MaskParams(ratio=0.5)
    mask = blend.blend_mask((512, 512), ASTRONAUT_LM, params, ASTRONAUT_BOX)
    assert mask.max() == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    a, b = (blend.blend_mask((512, 512), ASTRONAUT_LM, blend.MaskParams.sample(rng)) for _ in range(2))
    assert np.abs(a - b).mean() > 1e-3, "random parameters must deform the mask"


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_alpha_blend_is_target_outside_and_source_inside(dtype):
    rng = np.random.default_rng(1)
    target, source = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    mask = np.zeros((32, 32), np.float32)
    mask[8:16] = 1.0
    mask[16:24] = 0.5
    if dtype == np.float32:
        target, source = target / np.float32(255), source / np.float32(255)
    out = blend.alpha_blend(target, source, mask)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[mask == 0], target[mask == 0])
    np.testing.assert_array_equal(out[mask == 1], source[mask == 1])
    half = (blend.to_float(target[16:24]) + blend.to_float(source[16:24])) / 2
    np.testing.assert_allclose(blend.to_float(out[16:24]), half, atol=1 / 255)


def _masked_mean(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return blend.to_float(img)[mask > 0.5].mean(0)


def test_colour_transfer_matches_the_target_statistics_in_the_mask(astronaut, hopper):
    mask = blend.hull_mask((512, 512), ASTRONAUT_LM)
    target = astronaut
    source = np.ascontiguousarray(hopper[:512])
    assert np.abs(_masked_mean(source, mask) - _masked_mean(target, mask)).max() > 0.05  # they differ before
    out = blend.colour_transfer(source, target, mask, space="rgb")
    assert out.dtype == np.uint8 and out.shape == source.shape
    np.testing.assert_allclose(_masked_mean(out, mask), _masked_mean(target, mask), atol=0.01)
    np.testing.assert_allclose(
        blend.to_float(out)[mask > 0.5].std(0), blend.to_float(target)[mask > 0.5].std(0), atol=0.02
    )
    lab = lambda im: cv2.cvtColor(blend.to_float(im), cv2.COLOR_RGB2LAB)[mask > 0.5].mean(0)
    out_lab = blend.colour_transfer(source, target, mask, space="lab")
    np.testing.assert_allclose(lab(out_lab), lab(target), atol=1.5)  # L in 0..100, a/b in about ±100
    with pytest.raises(ValueError, match="colour space"):
        blend.colour_transfer(source, target, mask, space="hsv")


def test_similarity_transform_maps_landmarks_onto_the_target():
    truth = cv2.getRotationMatrix2D((200, 120), 15, 0.6)
    truth[:, 2] += [-60, 25]
    jitter = np.random.default_rng(2).normal(0, 0.5, (5, 2))
    target = blend.transform_points(truth, ASTRONAUT_LM) + jitter
    matrix = blend.similarity_transform(ASTRONAUT_LM, target)
    assert matrix.shape == (2, 3)
    assert np.abs(blend.transform_points(matrix, ASTRONAUT_LM) - target).max() < 2
    np.testing.assert_allclose(matrix[:, :2], truth[:, :2], atol=0.02)


def test_align_face_moves_image_content_onto_the_target_landmarks():
    dots = np.zeros((200, 200, 3), np.uint8)
    src = np.float32([[60, 70], [120, 72], [90, 100], [65, 130], [118, 128]])
    for x, y in src:
        cv2.circle(dots, (int(x), int(y)), 3, (255, 255, 255), -1)
    dst = blend.transform_points(cv2.getRotationMatrix2D((90, 100), -20, 0.8), src) + [5, -8]
    aligned, _ = blend.align_face(dots, src, dst, (200, 200))
    for x, y in dst:
        yi, xi = int(round(y)), int(round(x))
        assert aligned[yi - 1 : yi + 2, xi - 1 : xi + 2].mean() > 200, f"no dot near target landmark {(x, y)}"


def test_self_blend_changes_the_image_only_under_its_mask(astronaut):
    rng = np.random.default_rng(3)
    out, mask = blend.self_blend(astronaut, ASTRONAUT_LM, rng, box=ASTRONAUT_BOX)
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    assert mask.shape == (512, 512) and mask.dtype == np.float32 and mask.min() >= 0 and mask.max() <= 1
    changed = np.any(out != astronaut, axis=2)
    assert changed.sum() > 500, "the self-blend must change the face"
    assert not changed[mask == 0].any(), "pixels outside the mask must stay as they were"
    x1, y1, x2, y2 = ASTRONAUT_BOX.astype(int)
    assert mask[:y1].max() == 0 and mask[y2:].max() == 0


def test_self_blend_is_reproducible_from_its_parameters(astronaut):
    params = blend.SBIParams.sample(np.random.default_rng(4))
    a = blend.self_blend(astronaut, ASTRONAUT_LM, params=params)
    b = blend.self_blend(astronaut, ASTRONAUT_LM, params=params)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = blend.self_blend(astronaut, ASTRONAUT_LM, np.random.default_rng(5))
    assert np.abs(c[1] - a[1]).mean() > 1e-3
    with pytest.raises(ValueError, match="rng or params"):
        blend.self_blend(astronaut, ASTRONAUT_LM)


def test_self_blend_works_on_float_images(astronaut):
    img = blend.to_float(astronaut)
    out, mask = blend.self_blend(img, ASTRONAUT_LM, np.random.default_rng(6))
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert not np.any(out != img, axis=2)[mask == 0].any()


def test_face_swap_puts_a_colour_matched_donor_face_under_the_mask(astronaut, hopper):
    out, mask = blend.face_swap(astronaut, ASTRONAUT_LM, hopper, HOPPER_LM, np.random.default_rng(7), box=ASTRONAUT_BOX)
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    assert mask.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(out[mask == 0], astronaut[mask == 0])
    core = mask == 1
    assert np.abs(blend.to_float(out)[core] - blend.to_float(astronaut)[core]).mean() > 0.04, "the face must change"
    # the donor's face lies on the target's landmarks: the swapped eye looks like the aligned donor's
    aligned, _ = blend.align_face(hopper, HOPPER_LM, ASTRONAUT_LM, astronaut.shape)
    (x, y) = np.round(ASTRONAUT_LM[0]).astype(int)
    patch = lambda im: blend.to_float(im)[y - 6 : y + 7, x - 6 : x + 7].mean(2).ravel()
    assert np.corrcoef(patch(out), patch(aligned))[0, 1] > np.corrcoef(patch(out), patch(astronaut))[0, 1]
    # ... recoloured: the aligned donor's colours differ, the swapped face's match the target's
    weighted = lambda im: (blend.to_float(im) * mask[..., None]).sum((0, 1)) / mask.sum()
    assert np.abs(weighted(aligned) - weighted(astronaut)).max() > 0.05
    np.testing.assert_allclose(weighted(out), weighted(astronaut), atol=0.02)
