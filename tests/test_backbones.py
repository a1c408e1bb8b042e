"""fmkit.models.backbones: timm backbones from scratch, a checkpoint file or the HF cache (offline); Normalize."""

import socket
import time
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from fmkit.errors import FmkitError
from fmkit.models.backbones import Normalize, create_backbone, input_normalization

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache in offline mode; any attempt to reach a network fails at once."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    # huggingface_hub reads these at import: patch the constants it consults at call time
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))

    def no_network(*args, **kwargs):
        raise OSError("a test tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    return home / "hub"


@pytest.mark.parametrize("num_classes", [1, 3], ids=["one_logit", "three_classes"])
def test_resnet18_from_scratch_gives_num_classes_outputs(num_classes):
    model = create_backbone("resnet18", num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, num_classes)


def test_input_normalization_of_resnet18_is_imagenets():
    mean, std = input_normalization(create_backbone("resnet18"))
    assert mean == pytest.approx(IMAGENET_MEAN) and std == pytest.approx(IMAGENET_STD)
    assert len(mean) == len(std) == 3 and all(isinstance(v, float) for v in mean + std)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"], ids=["torch_save", "safetensors"])
def test_checkpoint_file_round_trip_keeps_all_but_the_head(tmp_path, suffix):
    source = create_backbone("resnet18")
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(source.state_dict(), path)
    else:
        save_file(source.state_dict(), path)
    loaded = create_backbone("resnet18", checkpoint=path)
    expected, got = source.state_dict(), loaded.state_dict()
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        if not key.startswith("fc."):
            assert torch.equal(got[key], value), key
    assert not torch.equal(got["fc.weight"], expected["fc.weight"])  # the classifier is dropped (new init)


def _write_resnet34(path: Path) -> None:
    torch.save(timm.create_model("resnet34", num_classes=1).state_dict(), path)


def _write_garbage(path: Path) -> None:
    path.write_bytes(b"not a state dict" * 8)


def _write_wrong_shapes(path: Path) -> None:
    state = timm.create_model("resnet18", num_classes=1).state_dict()
    state["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    torch.save(state, path)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (None, r"backbone checkpoint not found: .*ckpt\.pth"),
        (_write_resnet34, r"backbone checkpoint .*ckpt\.pth does not fit resnet18: \d+ unexpected"),
        (_write_wrong_shapes, r"cannot load resnet18 weights from .*ckpt\.pth: .*size mismatch"),
        (_write_garbage, r"cannot load resnet18 weights from .*ckpt\.pth"),
    ],
    ids=["missing_file", "other_architecture", "wrong_shapes", "garbage_file"],
)
def test_bad_checkpoint_files_raise_one_line_naming_the_file(tmp_path, write, message):
    path = tmp_path / "ckpt.pth"
    if write is not None:
        write(path)
    with pytest.raises(FmkitError, match=message) as info:
        create_backbone("resnet18", checkpoint=path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "resnt18"}, r"unknown backbone 'resnt18': not a timm model; did you mean resnet18"),
        ({"name": "resnet18.no_such_tag"}, r"cannot create backbone resnet18\.no_such_tag"),
        ({"name": "resnet18", "pretrained": True, "checkpoint": "w.pth"}, r"pretrained=True or checkpoint=.*not both"),
    ],
    ids=["unknown_name", "unknown_tag", "pretrained_and_checkpoint"],
)
def test_bad_names_and_options_raise_fmkit_error(kwargs, message):
    with pytest.raises(FmkitError, match=message):
        create_backbone(**kwargs)


def test_pretrained_offline_without_cache_says_where_to_put_the_weights(offline_hub):
    start = time.monotonic()
    with pytest.raises(FmkitError) as info:
        create_backbone("resnet18", pretrained=True)
    assert time.monotonic() - start < 10  # no network attempt, no retries
    message = str(info.value)
    assert "\n" not in message
    assert "resnet18" in message and "not in the Hugging Face cache" in message
    assert str(offline_hub / "models--timm--resnet18.a1_in1k") in message
    assert "model.checkpoint" in message and "state_dict()" in message


def test_pretrained_loads_from_the_local_cache_offline(offline_hub):
    """A cache laid out as huggingface_hub does (the folder the error message names) serves timm offline."""
    source = timm.create_model("resnet18")  # 1000 ImageNet classes, like timm's weights
    repo = offline_hub / "models--timm--resnet18.a1_in1k"
    commit = "0" * 40
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    save_file(source.state_dict(), repo / "snapshots" / commit / "model.safetensors")
    model = create_backbone("resnet18", pretrained=True)
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert model.fc.out_features == 1


@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (2, 3, 4, 5, 6)], ids=["frames", "clips"])
def test_normalize_frames_and_clips(shape):
    norm = Normalize(IMAGENET_MEAN, IMAGENET_STD)
    x = torch.rand(shape)
    view = (1, 3) + (1,) * (len(shape) - 2)
    expected = (x - torch.tensor(IMAGENET_MEAN).view(view)) / torch.tensor(IMAGENET_STD).view(view)
    torch.testing.assert_close(norm(x), expected)
    assert norm(x).shape == shape


def test_normalize_buffers_are_saved_and_shown():
    norm = Normalize(*input_normalization(create_backbone("resnet18")))
    state = norm.state_dict()
    assert set(state) == {"mean", "std"} and state["mean"].shape == state["std"].shape == (1, 3, 1, 1)
    assert "mean=(0.485, 0.456, 0.406)" in repr(norm) and "std=(0.229, 0.224, 0.225)" in repr(norm)
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize(IMAGENET_MEAN, (0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match=r"images \(N, C, H, W\) or clips"):
        norm(torch.rand(3, 5, 6))
