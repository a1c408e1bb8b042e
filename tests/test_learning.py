"""Training learns: a detector trained for well under a minute detects fakes of people it never saw.

It breaks when the labels, the input normalisation, the loss or the data pipeline break: each
leaves the detector at chance on held-out identities.
"""

import json

import pytest

from fmkit.config import train_config
from fmkit.data.index import build_index
from fmkit.data.preprocess import preprocess
from fmkit.data.synth import synthesize
from fmkit.engine import train


@pytest.fixture(scope="module")
def learnable_faces(tmp_path_factory):
    """30 identities (18 train, 6 val, 6 test), one real and three fakes each, 4 crops of 64 px per video."""
    tmp = tmp_path_factory.mktemp("learn")
    root = synthesize(tmp / "data", videos=30, identities=30, frames=4, size=128, progress=False)
    preprocess(build_index(root, "folder").df, tmp / "faces", root=root, cfg={"frames": 4, "size": 64}, progress=False)
    return tmp / "faces"


@pytest.mark.slow
def test_a_detector_trained_briefly_detects_fakes_of_unseen_identities(learnable_faces, tmp_path):
    cfg = train_config("baseline2d", settings=["epochs=12", "device=cpu"])
    run = train(cfg, learnable_faces, tmp_path / "run")
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test["n_videos"] >= 18, test  # 6 people x 4 videos, less any video MTCNN found no face in
    assert test["video_auc"] >= 0.8, test
