"""Model registry, WhiteningDetector (Concept Whitening on timm backbones) and baseline2d."""

import pytest
import timm
import torch
from torch import nn

from fmkit.errors import FmkitError
from fmkit.models import create_model, list_models, register_model
from fmkit.models.detector import BACKBONES, WhiteningDetector
from fmkit.models.whitening import FeatureWhitening


def images(n: int = 4, px: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, px, px, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_and_rejects_unknown_names():
    assert {"whitening", "baseline2d"} <= set(list_models())
    with pytest.raises(FmkitError, match="unknown model 'nope'.*baseline2d.*whitening"):
        create_model("nope")
    with pytest.raises(FmkitError, match="whitening.*colour"):
        create_model("whitening", colour="red")
    with pytest.raises(FmkitError, match="unknown backbone 'vgg'"):
        create_model("whitening", backbone="vgg")
    with pytest.raises(FmkitError, match="no module 'layer9'"):
        create_model("whitening", layer="layer9")
    with pytest.raises(FmkitError, match="not a BatchNorm2d"):
        create_model("whitening", layer="layer4.1.conv2")
    with pytest.raises(ValueError, match="already registered"):
        register_model("whitening")(nn.Identity)


def test_create_model_records_its_config_and_rebuilds_from_it():
    model = create_model("whitening", mode="exact", concepts=["left_eye", "nose"], T=5)
    assert model.fmkit_config == {"name": "whitening", "mode": "exact", "concepts": ["left_eye", "nose"], "T": 5}
    assert model.whitening.T == 5 and model.concepts == ("left_eye", "nose")
    config = dict(model.fmkit_config)
    again = create_model(config.pop("name"), **config)
    again.load_state_dict(model.state_dict())  # strict: same structure
    assert create_model("baseline2d").fmkit_config == {"name": "baseline2d"}


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_detector_forward_gives_one_logit_per_image(backbone):
    # the default layer; group_size=64 only keeps the CPU cost of whitening small here
    model = create_model("whitening", backbone=backbone, group_size=64).train()
    layer = BACKBONES[backbone][0]
    assert isinstance(model.backbone.get_submodule(layer), FeatureWhitening)
    assert model.whitening is model.backbone.get_submodule(layer)
    x = images(2)
    logits = model(x)
    assert logits.shape == (2,)
    logits.sum().backward()
    first = next(model.backbone.parameters())
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert torch.isfinite(model.whitening.whitening_error)
    model.eval()
    with torch.no_grad():
        feats = model.whitened_features(x)
    assert feats.shape[:2] == (2, model.whitening.num_features) and feats.dim() == 4


def test_fused_norm_activation_keeps_its_activation():
    model = create_model("whitening", backbone="efficientnet_b0", layer="blocks.6.0.bn1")
    wrapper = model.backbone.get_submodule("blocks.6.0.bn1")
    assert isinstance(wrapper.whiten, FeatureWhitening) and isinstance(wrapper.act, nn.SiLU)
    assert model.whitening is wrapper.whiten
    model.eval()
    with torch.no_grad():
        z = model.whitened_features(images(2))
    assert (z < 0).any()  # taken before the SiLU
    assert model(images(2)).shape == (2,)


def test_baseline_has_the_same_api_and_exposes_the_layer():
    model = create_model("baseline2d").eval()
    x = images(3)
    assert model(x).shape == (3,)
    seen = {}
    bn = model.backbone.get_submodule("layer4.1.bn2")
    handle = bn.register_forward_hook(lambda _m, _a, out: seen.setdefault("out", out))
    with torch.no_grad():
        feats = model.features_at(x)
    handle.remove()
    assert torch.equal(feats, seen["out"]) and feats.shape == (3, 512, 2, 2)
    assert model.features_at(x, "layer3").shape == (3, 256, 4, 4)


def test_local_checkpoint_initialises_the_backbone(tmp_path):
    reference = timm.create_model("resnet18", pretrained=False)  # 1000 classes: head dropped
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    for name in ("whitening", "baseline2d"):
        model = create_model(name, checkpoint=str(path))
        assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
        assert model.backbone.fc.out_features == 1
    with pytest.raises(FmkitError, match="not found: .*missing.pth"):
        create_model("whitening", checkpoint=str(tmp_path / "missing.pth"))
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(FmkitError, match="bad.pth"):
        create_model("whitening", checkpoint=str(tmp_path / "bad.pth"))


def concept_images(k: int, n: int = 6, seed: int = 0) -> torch.Tensor:
    """Concept 0: a bright square; 1: vertical stripes; 2: a dark disc (random placement)."""
    g = torch.Generator().manual_seed(1000 * k + seed)
    x = 0.2 * torch.randn(n, 3, 64, 64, generator=g)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    for i in range(n):
        cy, cx = torch.randint(16, 48, (2,), generator=g).tolist()
        if k == 0:
            x[i, :, cy - 8 : cy + 8, cx - 8 : cx + 8] += 2.0
        elif k == 1:
            x[i] += torch.sin(xx / 2.0 + cx).float()
        else:
            x[i, :, ((yy - cy) ** 2 + (xx - cx) ** 2) < 100] -= 2.0
    return x


def axis_activation(model: WhiteningDetector, k: int, x: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return model.whitened_features(x)[:, k].flatten(1).amax(1).mean().item()


def test_concept_step_aligns_axes_without_touching_other_state():
    torch.manual_seed(0)
    model = create_model("whitening", concepts=["square", "stripes", "disc"], group_size=64).train()
    with torch.no_grad():  # running statistics from a few training batches
        for seed in range(3):
            batch = [concept_images(k, n=4, seed=seed) for k in range(3)] + [images(4, seed=seed)]
            model(torch.cat(batch))
    held_out = [concept_images(k, seed=99) for k in range(3)]
    before = [axis_activation(model, k, held_out[k]) for k in range(3)]
    model.train()
    rotation_key = "backbone.layer4.1.bn2.rotation"
    state = {k: v.clone() for k, v in model.state_dict().items() if k != rotation_key and torch.is_tensor(v)}
    for step in range(4):
        result = model.concept_step([concept_images(k, n=4, seed=step) for k in range(3)])
        assert result.after >= result.before
    assert model.training and model.backbone.layer1.training
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v), f"concept_step changed {k}"
    after = [axis_activation(model, k, held_out[k]) for k in range(3)]
    msg = f"axis activation before {before}, after {after}"
    assert all(a > b for a, b in zip(after, before)), msg
    rot = model.whitening.rotation[0]
    assert not torch.allclose(rot, torch.eye(64))
    assert (rot.T @ rot - torch.eye(64)).norm() < 1e-4
    with pytest.raises(ValueError, match="expected 3 concept batches"):
        model.concept_step([concept_images(0)])


def test_checkpoint_round_trip_keeps_whitening_state(tmp_path):
    from fmkit.models import load
    from fmkit.models.checkpoint import save_checkpoint

    model = create_model("whitening", group_size=64, concepts=["square"]).train()
    with torch.no_grad():
        model(images(4))
    model.concept_step([concept_images(0, n=4)])
    path = save_checkpoint(tmp_path / "model.pt", model)
    again = load(path)
    assert not again.training and again.concepts == ("square",)
    assert torch.equal(again.whitening.rotation, model.whitening.rotation)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(again(images(2, seed=5)), model(images(2, seed=5)))


def test_baseline_reads_a_chosen_layer():
    x = torch.rand(2, 3, 64, 64)
    assert create_model("baseline2d").features_at(x).shape[1] == 512
    assert create_model("baseline2d", layer="layer3.1.bn2").features_at(x).shape[1] == 256
    with pytest.raises(FmkitError, match="layer9"):
        create_model("baseline2d", layer="layer9.bn")


@pytest.mark.parametrize("name", ["baseline2d", "whitening"])
def test_models_take_images_in_0_1_and_normalise_them_with_the_backbone_statistics(name, tmp_path):
    from fmkit.models import load
    from fmkit.models.backbones import input_normalization
    from fmkit.models.checkpoint import save_checkpoint

    model = create_model(name, backbone="xception41" if name == "baseline2d" else "resnet18").eval()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in input_normalization(model.backbone))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), model.backbone((x - mean) / std).squeeze(-1), atol=1e-6)
    state = save_checkpoint(tmp_path / "m.pt", model)
    again = load(state)
    assert torch.equal(again.normalize.mean, mean) and torch.equal(again.normalize.std, std)
