import pytest
import torch
from torch import nn

from sr_models import create_model, list_models
from sr_models.archs.pan import SCPA
from sr_models.layers import PixelShuffle, pixel_shuffle
from sr_models.registry import architecture

TINY = {name: architecture(name).tiny for name in list_models()}
CASES = [(name, scale) for name in list_models() for scale in architecture(name).scales]


def test_every_tiny_config_is_small_and_valid():
    for name in list_models():
        model = create_model(name, scale=architecture(name).scales[0], **TINY[name])
        assert sum(p.numel() for p in model.parameters()) < 50_000, name


@pytest.mark.parametrize("name,scale", CASES)
def test_output_shape(name, scale):
    model = create_model(name, scale=scale, **TINY[name]).eval()
    out = model(torch.rand(2, 3, 16, 11))
    assert out.shape == (2, 3, 16 * scale, 11 * scale)
    assert model.spec == {"name": name, "scale": scale, **TINY[name]}


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_the_papers():
    assert parameter_count(create_model("srresnet", scale=4)) == 1_549_462  # the lab report's model summary
    assert parameter_count(create_model("pan", scale=4)) == 272_419  # the authors' PANx4_DF2K.pth
    assert parameter_count(create_model("pan", scale=2)) == 261_403
    assert parameter_count(create_model("pan", scale=3)) == 261_403


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_einops_pixel_shuffle_equals_torch(scale):
    x = torch.randn(2, 5 * scale * scale, 7, 9)
    expected = nn.PixelShuffle(scale)(x)
    assert torch.equal(pixel_shuffle(x, scale), expected)
    assert torch.equal(PixelShuffle(scale)(x), expected)


def test_scpa_split_and_merge_equal_chunk_and_cat():
    block = SCPA(channels=8)
    x = torch.randn(2, 8, 6, 5)
    # The same block written with torch.chunk / torch.cat.
    plain, attention = block.act(block.split(x)).chunk(2, dim=1)
    plain = block.act(block.plain_branch(plain))
    attention = block.act(block.attention_branch(attention))
    expected = x + block.merge(torch.cat([plain, attention], dim=1))
    torch.testing.assert_close(block(x), expected, rtol=0, atol=0)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="valid models: " + ", ".join(list_models())):
        create_model("edsr", scale=4)


def test_unsupported_scale_lists_valid_scales():
    with pytest.raises(ValueError, match=r"pan does not support scale 8; valid scales: \[2, 3, 4\]"):
        create_model("pan", scale=8)


def test_unknown_hyperparameter_lists_valid_ones():
    with pytest.raises(ValueError, match="no hyper-parameter width.*valid: channels"):
        create_model("srresnet", scale=4, width=8)


def test_constructors_are_keyword_only():
    with pytest.raises(TypeError):
        architecture("pan").model_class(4)
