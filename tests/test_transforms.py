"""fmkit.data.transforms: evaluation resize, training augmentations of frames and clips, argument checks."""

import pickle

import pytest
import torch
from torchvision.transforms import v2

from fmkit.data.transforms import build_transform

#: Every augmentation on (blur always; colour jitter with its fixed probability 0.8).
ALL = {"hflip": True, "color_jitter": 0.4, "blur": 1.0, "jpeg": (30, 90), "rrc": 0.5}


def frame(h: int = 48, w: int = 40, seed: int = 0) -> torch.Tensor:
    """A float frame (3, h, w) in [0, 1]: a smooth gradient plus noise, asymmetric left-right."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, w).expand(3, h, w) * torch.tensor([1.0, 0.6, 0.3]).view(3, 1, 1)
    return (0.7 * ramp + 0.3 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


def clip(t: int = 4, h: int = 48, w: int = 40) -> torch.Tensor:
    """A float clip (3, t, h, w) of different frames."""
    return torch.stack([frame(h, w, seed=i) for i in range(t)], dim=1)


@pytest.fixture(autouse=True)
def _keep_global_rng():
    """The tests seed torch's global RNG; leave it as it was."""
    with torch.random.fork_rng():
        yield


@pytest.mark.parametrize("kind", ["frame", "clip"])
def test_eval_is_a_plain_antialiased_resize(kind):
    x = frame() if kind == "frame" else clip()
    out = build_transform(32, train=False, **ALL)(x)
    resize = v2.Resize((32, 32), antialias=True)
    expected = resize(x) if kind == "frame" else torch.stack([resize(x[:, t]) for t in range(x.shape[1])], dim=1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    assert torch.equal(build_transform(None, train=False, **{**ALL, "rrc": None})(x), x)


@pytest.mark.parametrize("size", [32, None], ids=["size32", "keep_size"])
@pytest.mark.parametrize("kind", ["frame", "clip"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_output_shape_dtype_and_range(train, kind, size):
    torch.manual_seed(0)
    x = frame() if kind == "frame" else clip()
    options = {**ALL, "rrc": ALL["rrc"] if size else None}
    out = build_transform(size, train=train, **options)(x)
    h, w = (size, size) if size else x.shape[-2:]
    assert out.shape == (*x.shape[:-2], h, w)
    assert out.dtype == torch.float32 and type(out) is torch.Tensor
    assert out.min() >= 0 and out.max() <= 1


def test_clip_frames_get_the_same_random_parameters():
    torch.manual_seed(0)
    x = frame().unsqueeze(1).repeat(1, 5, 1, 1)  # 5 identical frames
    transform = build_transform(32, train=True, **ALL)
    outs = [transform(x) for _ in range(6)]
    for out in outs:
        assert torch.equal(out, out[:, :1].expand_as(out))  # still identical frames
    assert not all(torch.equal(outs[0], o) for o in outs[1:])  # while the draws differ from call to call


def test_a_clip_is_flipped_as_a_whole():
    torch.manual_seed(0)
    x = clip()
    transform = build_transform(None, train=True, hflip=True)
    flipped = 0
    for _ in range(10):
        out = transform(x)
        assert torch.equal(out, x) or torch.equal(out, x.flip(-1))
        flipped += torch.equal(out, x.flip(-1))
    assert 0 < flipped < 10


def test_flip_happens_about_half_the_time():
    torch.manual_seed(0)
    x = frame()
    transform = build_transform(None, train=True, hflip=True)
    flips = sum(torch.equal(transform(x), x.flip(-1)) for _ in range(400))
    assert 160 < flips < 240  # 200 ± 4 standard deviations
    assert all(torch.equal(build_transform(None, train=True, hflip=False)(x), x) for _ in range(20))


def test_jpeg_changes_pixels_and_keeps_the_range():
    torch.manual_seed(0)
    x = frame()
    out = build_transform(None, train=True, hflip=False, jpeg=(10, 10))(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert (out - x).abs().mean() > 0.01
    assert out.min() >= 0 and out.max() <= 1


def test_transform_pickles_for_dataloader_workers():
    transform = build_transform(32, train=True, **ALL)
    torch.manual_seed(0)
    expected = transform(frame())
    torch.manual_seed(0)
    assert torch.equal(pickle.loads(pickle.dumps(transform))(frame()), expected)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"size": 0}, "size"),
        ({"size": 3.5}, "size"),
        ({"size": True}, "size"),
        ({"color_jitter": -0.1}, "color_jitter"),
        ({"blur": 1.5}, "blur"),
        ({"blur": -0.1}, "blur"),
        ({"jpeg": (0, 50)}, "jpeg"),
        ({"jpeg": (60, 50)}, "jpeg"),
        ({"jpeg": (10, 101)}, "jpeg"),
        ({"jpeg": (10.0, 50)}, "jpeg"),
        ({"jpeg": (10,)}, "jpeg"),
        ({"rrc": 0.0}, "rrc"),
        ({"rrc": 1.5}, "rrc"),
        ({"size": None, "rrc": 0.5}, "rrc"),
    ],
    ids=[
        "size_zero",
        "size_float",
        "size_bool",
        "jitter_negative",
        "blur_above_one",
        "blur_negative",
        "jpeg_quality_zero",
        "jpeg_reversed",
        "jpeg_above_100",
        "jpeg_float",
        "jpeg_one_value",
        "rrc_zero",
        "rrc_above_one",
        "rrc_without_size",
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, argument):
    kwargs = {"size": 32, **kwargs}
    with pytest.raises(ValueError, match=f"^{argument} ") as info:
        build_transform(kwargs.pop("size"), train=True, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("shape", [(3, 8), (1, 8, 8), (3, 2, 2, 8, 8)], ids=["2d", "one_channel", "5d"])
def test_bad_inputs_raise_value_error(shape):
    with pytest.raises(ValueError, match="expected a float frame"):
        build_transform(8, train=False)(torch.rand(shape))
    with pytest.raises(ValueError, match="expected a float frame"):
        build_transform(8, train=False)(torch.zeros(3, 8, 8, dtype=torch.uint8))
