import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmkit.config import SYNTH, defaults
from fmkit.data.people import photo_persons
from fmkit.data.synth import METADATA_COLUMNS, METHODS, synthesize
from fmkit.data.video import probe, read_frames
from fmkit.errors import FmkitError

TINY = dict(videos=3, identities=3, frames=4, size=64, progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("synth") / "a", seed=0, **TINY)


@pytest.fixture(scope="module")
def tiny_again(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("synth") / "b", seed=0, **TINY)


def _meta(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)


def _masks(root: Path, rel: str) -> np.ndarray:
    with np.load((root / "masks" / rel).with_suffix(".npz")) as data:
        return data["masks"]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_metadata(tiny):
    meta = _meta(tiny)
    assert list(meta.columns) == METADATA_COLUMNS
    videos = sorted(p.relative_to(tiny).as_posix() for p in tiny.rglob("*.mp4"))
    assert sorted(meta["path"]) == videos, "metadata lists exactly the videos on disk"
    real = meta[meta["method"] == "real"]
    assert sorted(real["path"]) == [f"real/r{i:03d}.mp4" for i in range(3)]
    persons = photo_persons()
    assert (real["label"] == "0").all() and (real["source_id"] == real["photo"].map(persons)).all()
    assert (meta["identity"] == meta["source_id"]).all(), "the identity of a video is its person"
    fake = meta[meta["method"] != "real"]
    assert (fake["label"] == "1").all() and len(fake) == 3 * len(METHODS)
    photo_of = dict(zip(real["path"].str[5:9], real["photo"]))
    for row in fake.itertuples():
        folder, name = row.path.rsplit("/", 1)
        assert folder == f"fake/{row.method}" and row.photo == photo_of[name[:4]], "a fake is made from its real"
    assert (fake["source_id"] == fake["photo"].map(persons)).all()
    assert set(meta.loc[meta.method == "selfblend", "path"]) == {f"fake/selfblend/r{i:03d}_sbi.mp4" for i in range(3)}
    assert set(meta.loc[meta.method == "flicker", "path"]) == {f"fake/flicker/r{i:03d}_flk.mp4" for i in range(3)}
    info = json.loads((tiny / "synth.json").read_text())
    assert info["config"] == {
        **{k: v for k, v in TINY.items() if k != "progress"},
        "fps": 25,
        "seed": 0,
        "methods": list(METHODS),
    }
    assert not list(tiny.rglob(".*")), "no temporary or partial-run files are left"


def test_splits_group_identities_and_donors(tiny):
    meta = _meta(tiny)
    assert meta.groupby("identity")["split"].nunique().max() == 1, "an identity must stay in one split"
    assert meta.groupby("source_id")["split"].nunique().max() == 1
    for split in ("train", "val", "test"):
        part = meta[meta["split"] == split]
        assert set(part["label"]) == {"0", "1"}, f"{split} needs real and fake videos"
    swaps = meta[meta["method"] == "faceswap"]
    persons = photo_persons()
    assert (swaps["donor"].map(persons) != swaps["identity"]).all() and (swaps["donor"] != "").all()
    assert all(path.endswith(f"_{donor}.mp4") for path, donor in zip(swaps["path"], swaps["donor"]))
    info = json.loads((tiny / "synth.json").read_text())
    split_of = {photo: p["split"] for photo, p in info["photos"].items()}
    assert (swaps["donor"].map(split_of) == swaps["split"]).all(), "a donor face must not cross splits"
    assert not {persons[p] for p in info["donor_only_photos"]} & set(meta["identity"])
    assert {p["person"] for p in info["photos"].values()} >= set(meta["identity"])


def test_a_person_with_several_photos_stays_in_one_split():
    """The grouping puts several photos on one person; the plan splits persons, never photos, and the
    demo's photos (99) are more photos than persons."""
    from fmkit.config import SYNTH, resolve
    from fmkit.data.synth import _plan

    cfg = resolve(SYNTH, {"videos": 99, "identities": 99, "size": 128})
    plan = _plan(cfg)
    persons = photo_persons()
    several = {p for p in persons.values() if sum(v == p for v in persons.values()) > 1}
    used = {plan.person_of[n] for n in plan.video_photo.values()}
    assert several & used and len(used) < len(set(plan.video_photo.values())), "some person has several photos"
    for person in used:
        splits = {plan.split_of(n) for n in plan.person_of if plan.person_of[n] == person}
        assert len(splits) == 1, f"person {person} is in splits {splits}"
    test_persons = {p for p in used if plan.person_split[p] == "test"}
    assert len(test_persons) >= 15


def test_folder_index_keeps_the_synth_splits(tiny):
    from fmkit.data.index import build_index

    index = build_index(tiny, "folder").df.set_index("path")
    meta = _meta(tiny).set_index("path")
    assert sorted(index.index) == sorted(meta.index)
    assert (index["split"] == meta.loc[index.index, "split"]).all()
    assert (index["source_id"] == meta.loc[index.index, "source_id"]).all()


def test_masks_match_video_frames_and_cover_the_manipulation(tiny):
    meta = _meta(tiny)
    for row in meta[meta["method"] != "real"].itertuples():
        info = probe(tiny / row.path)
        masks = _masks(tiny, row.path)
        assert masks.dtype == np.uint8 and masks.shape == (info.num_frames, info.height, info.width) == (4, 64, 64)
        assert (masks.reshape(4, -1).max(1) > 0).all(), f"empty mask in {row.path}"
        fake = np.stack(read_frames(tiny / row.path)).astype(float)
        real = np.stack(read_frames(tiny / f"real/{row.path.rsplit('/', 1)[1][:4]}.mp4")).astype(float)
        diff = np.abs(fake - real).mean(-1)
        inside, outside = diff[masks >= masks.max() / 2].mean(), diff[masks == 0].mean()
        assert inside > 2 * outside + 1, f"{row.path}: the change must lie under the mask ({inside} vs {outside})"


def _decoded(root: Path, rel: str) -> np.ndarray:
    return np.stack(read_frames(root / rel)).astype(float)


def test_same_seed_same_data_other_seed_other_data(tiny, tiny_again, tmp_path):
    first, second = _files(tiny), _files(tiny_again)
    assert first.keys() == second.keys()
    for name in first:
        if name.endswith(".mp4"):
            # libx264 may encode the same frames to different bytes in another process
            # (seen even with threads=1), so videos are compared by their decoded frames
            assert np.abs(_decoded(tiny, name) - _decoded(tiny_again, name)).mean() < 0.5, name
        else:
            assert first[name] == second[name], f"{name} differs between two runs with one seed"
    other_root = synthesize(tmp_path / "c", seed=1, **TINY)
    other = _files(other_root)
    masks = [n for n in first if n.endswith("_sbi.npz")]
    assert masks and all(first[n] != other[n] for n in masks)
    assert np.abs(_decoded(tiny, "real/r000.mp4") - _decoded(other_root, "real/r000.mp4")).mean() > 5


def test_flicker_masks_change_more_between_frames_than_selfblend_masks(tiny):
    def frame_change(method: str) -> float:
        rels = _meta(tiny).query("method == @method")["path"]
        return float(np.mean([np.abs(np.diff(_masks(tiny, r).astype(float), axis=0)).mean() for r in rels]))

    assert frame_change("flicker") > 3 * frame_change("selfblend")


def test_resume_rewrites_only_what_is_missing(tiny, tmp_path):
    out = tmp_path / "resume"
    synthesize(out, seed=0, **TINY)
    victim = out / "fake" / "flicker" / "r001_flk.mp4"
    kept = out / "real" / "r000.mp4"
    victim.unlink()
    before = kept.stat().st_mtime_ns
    synthesize(out, seed=0, **TINY)
    assert victim.read_bytes() == (tiny / "fake" / "flicker" / "r001_flk.mp4").read_bytes()
    assert kept.stat().st_mtime_ns == before


def test_refuses_foreign_or_differently_configured_folders(tiny, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FmkitError, match="not empty"):
        synthesize(foreign, **TINY)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"], "nothing may be written into it"
    with pytest.raises(FmkitError, match="another config.*frames"):
        synthesize(tiny, **{**TINY, "frames": 5})
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FmkitError, match="is a file"):
        synthesize(a_file, **TINY)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(identities=2), "identities must be an integer >= 3"),
        (dict(videos=3, identities=4), "one video per identity"),
        (dict(size=63), "even"),
        (dict(frames=0), "frames"),
        (dict(methods=("deepfake",)), "methods must be a list of distinct names from faceswap"),
    ],
    ids=["identities", "videos", "size", "frames", "methods"],
)
def test_bad_config_is_refused(bad, message, tmp_path):
    with pytest.raises(FmkitError, match=message):
        synthesize(tmp_path / "x", **{**TINY, **bad})
    assert not (tmp_path / "x").exists()


def test_mtcnn_finds_the_face_in_every_real_frame_at_the_default_size(tmp_path):
    from fmkit.data.faces import FaceDetector

    size = defaults(SYNTH)["size"]
    out = synthesize(tmp_path / "d", videos=4, identities=4, frames=3, methods=("selfblend",), progress=False)
    meta = _meta(out)
    assert set(meta["photo"]) >= {"astronaut", "hopper"} and meta["photo"].str.startswith("lfw").any()
    real = meta[meta["method"] == "real"]
    frames = [f for rel in real["path"] for f in read_frames(out / rel)]
    assert frames[0].shape == (size, size, 3)
    faces = FaceDetector().detect(frames)
    assert len(faces) == 4 * 3 and all(faces), "MTCNN must find the face in every real frame"
    fakes = [f for rel in meta.loc[meta["method"] != "real", "path"] for f in read_frames(out / rel)]
    assert all(FaceDetector().detect(fakes)), "fakes are redrawn until MTCNN finds every frame's face"
    # the self-blend of each frame lies on the face MTCNN finds there
    masks = np.concatenate([_masks(out, f"fake/selfblend/{p[5:9]}_sbi.mp4") for p in real["path"]])
    for found, mask in zip(faces, masks):
        x1, y1, x2, y2 = max(found, key=lambda f: f.area).box
        assert mask[int(max(y1, 0)) : int(y2), int(max(x1, 0)) : int(x2)].sum() > 0.9 * mask.sum()


def test_wobble_is_a_real_video_whose_inner_face_jitters_against_the_head():
    """Per frame a wobble fake keeps a real frame's detail and its pixels outside the mask; between
    frames its inner face moves against the head far more than in the real video."""
    from fmkit.data.signal import laplacian, region_jitter
    from fmkit.data.synth import render_real, select_photos, wobble_shifts

    photo = select_photos(1, 128)[0]
    real = render_real(photo, np.random.default_rng(0), 8, 128, 25)
    fake = render_real(photo, np.random.default_rng(0), 8, 128, 25, wobble=wobble_shifts(np.random.default_rng(1), 8))
    r, f, m = np.stack(real.frames), np.stack(fake.frames), fake.masks
    assert real.masks is None and m.shape == (8, 128, 128)
    np.testing.assert_array_equal(real.landmarks, fake.landmarks)
    outside = np.broadcast_to((m == 0)[..., None], r.shape)
    assert np.abs(r[outside].astype(int) - f[outside]).max() <= 1, "outside the mask it is the real frame"
    inside = m >= 0.5
    detail = laplacian(f)[inside].mean() / laplacian(r)[inside].mean()
    assert 0.95 < detail < 1.1, f"per-frame detail must be a real frame's, got {detail:.3f}"
    jitter, floor = region_jitter(f, m), region_jitter(r, m)
    assert jitter > 3 * floor and jitter > 0.5, f"inner-vs-head jitter {jitter:.2f} px vs real {floor:.2f} px"
