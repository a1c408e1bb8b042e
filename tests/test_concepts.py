import numpy as np
import pytest
import torch

from fmkit.data.concepts import (
    CONCEPTS,
    FACE_CONCEPTS,
    ConceptDataset,
    boundary_centre,
    concept_datasets,
    crop_patch,
    landmark_centre,
    sample_concept_batch,
)
from fmkit.data.schema import read_faces
from fmkit.errors import FmkitError


@pytest.mark.parametrize("ratio", [1.0, 0.6, 0.3], ids=["full blend", "ratio 0.6", "ratio 0.3"])
def test_boundary_centre_sits_on_the_seam_whatever_the_blend_ratio(ratio):
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    radius = ((xx - 32) ** 2 + (yy - 30) ** 2).sqrt()
    mask = ratio * torch.sigmoid((16 - radius) / 1.5)  # a soft disc of radius 16 blended at ``ratio``
    points = np.array([boundary_centre(mask, key=k) for k in range(12)])
    distances = np.hypot(points[:, 0] - 32, points[:, 1] - 30)
    assert np.all(np.abs(distances - 16) <= 2), "every centre lies on the seam"
    assert np.ptp(points[:, 1]) > 16 and np.ptp(points[:, 0]) > 16, "and they spread around it"
    assert boundary_centre(torch.zeros(8, 8)) is None and boundary_centre(torch.ones(8, 8)) is None


def test_crop_patch_zooms_on_the_centre():
    img = torch.zeros(3, 40, 40)
    img[:, 5:15, 25:35] = 1.0
    patch = crop_patch(img, np.array([30.0, 10.0]), 10)
    assert patch.shape == (3, 40, 40) and patch.mean() > 0.95
    assert crop_patch(img, np.array([0.0, 0.0]), 10).shape == (3, 40, 40), "clamped inside the image"


def test_concept_sets_from_a_synthetic_faces_manifest(synth_faces):
    manifest = read_faces(synth_faces)
    sets = concept_datasets(synth_faces, split=None)
    assert list(sets) == list(CONCEPTS), "masks present → the blend boundary is a concept too"
    assert len(sets["left_eye"]) == len(manifest)
    assert len(sets["blend_boundary"]) == ((manifest["label"] == 1) & (manifest["mask_path"] != "")).sum()
    x = sets["nose"][0]
    assert x.shape == (3, 64, 64) and float(x.min()) >= 0 and float(x.max()) <= 1
    row = manifest.sort_values(["video_id", "frame_idx"]).iloc[0]
    le, re = landmark_centre(row, "left_eye"), landmark_centre(row, "right_eye")
    assert le[0] < re[0] and 0 < le[1] < 64, "landmarks map into the 64 px crop"
    assert not torch.equal(sets["left_eye"][0], sets["mouth"][0])
    batch = sample_concept_batch(sets["mouth"], 4, (0, 3, 7))
    assert batch.shape == (4, 3, 64, 64)
    assert torch.equal(batch, sample_concept_batch(sets["mouth"], 4, (0, 3, 7))), "a draw depends on its key"
    assert not torch.equal(batch, sample_concept_batch(sets["mouth"], 4, (0, 3, 8)))
    small = concept_datasets(synth_faces, ["nose"], split=None, size=32)["nose"]
    assert small[0].shape == (3, 32, 32), "patches come out at the training size"


def test_concept_errors(synth_faces):
    with pytest.raises(FmkitError, match="unknown concept"):
        ConceptDataset(synth_faces / "faces.csv", "ears")
    manifest = read_faces(synth_faces)
    reals = manifest[manifest["label"] == 0]
    assert list(concept_datasets(reals, root=synth_faces, split=None)) == list(FACE_CONCEPTS)
    with pytest.raises(FmkitError, match="blend_boundary"):
        concept_datasets(reals, ["blend_boundary"], root=synth_faces, split=None)
