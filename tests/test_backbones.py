import pytest
from torch import nn

from zpeft import backbones

TIMM_BACKBONES = ["timm/resnet18", "timm/efficientnet_b0", "timm/convnext_atto", "timm/vit_tiny_patch16_224"]


def test_resnet18_mlp_has_the_reference_parameter_count():
    assert backbones.count_parameters(backbones.create("resnet18-mlp")) == 11_577_025


def test_resnet18_mlp_head_is_the_mlp_512_512_256_1():
    model = backbones.create("resnet18-mlp")
    assert model.head_names == ["net.mlp"]
    linears = [m for m in dict(model.named_modules())["net.mlp"].modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 256), (256, 1)]
    assert sum(p.numel() for p in model.head_parameters()) == 394_241


@pytest.mark.parametrize("name", ["cnn-small", "resnet18-mlp", *TIMM_BACKBONES])
def test_backbone_maps_five_band_images_to_one_redshift_each(name, images):
    model = backbones.create(name, in_chans=5, img_size=64)
    assert model(images).shape == (4,)


@pytest.mark.parametrize("name", ["timm/efficientnet_b0", "timm/convnext_atto"])
def test_default_adapter_targets_skip_grouped_convolutions(name):
    model = backbones.create(name)
    modules = dict(model.named_modules())
    targets = model.adapter_targets()
    assert targets
    assert all(getattr(modules[t], "groups", 1) == 1 for t in targets)
    grouped = [n for n, m in modules.items() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert grouped and not set(grouped) & set(targets)


def test_timm_head_comes_from_its_pretrained_cfg():
    assert backbones.create("timm/convnext_atto").head_names == ["net.head.fc"]


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(KeyError, match="resnet18-mlp"):
        backbones.create("resnet-imaginary")
    with pytest.raises(KeyError, match="timm has no model"):
        backbones.create("timm/not_a_model")


def test_missing_local_timm_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="local disk"):
        backbones.create("timm/resnet18", weights=str(tmp_path / "none.safetensors"))


def test_list_backbones_filters_with_wildcards():
    assert backbones.list_backbones("resnet*") == ["resnet18-mlp"]
    assert "timm/convnext_atto" in backbones.list_backbones("timm/convnext_a*")


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        backbones.register_backbone("cnn-small")(lambda **kw: None)
