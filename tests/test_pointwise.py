"""The refinement's 1x1 layers: in inference they run as oneDNN 1x1 convolutions of channels-last
maps (pna.models.channels_last.linear_nhwc), in training and under a trace as F.linear; both give
what a float64 matrix product gives, and swapping a layer's class keeps its parameters and the
random stream."""
import pytest
import torch
from timm.layers import Mlp
from torch import nn

from pna.models.channels_last import ChannelsLinear, as_channels_linear, linear_nhwc, onednn_pointwise
from pna.models.nam import NeighbourhoodAggregation
from pna.models.refine import RefineStage
from pna.models.sam import SelfAggregation


def _reference(x, weight, bias):
    """Each pixel's channels times the weight, in float64 (einsum: no F.linear, no convolution)."""
    out = torch.einsum("bhwc,oc->bhwo", x.double(), weight.flatten(1).double())
    return out if bias is None else out + bias.double()


@pytest.mark.parametrize("shape", [(1, 7, 5, 24), (2, 1, 1, 24), (3, 4, 1, 24), (2, 9, 6, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_inference_takes_the_convolution_and_gives_the_linear_layers_values(shape, bias):
    torch.manual_seed(0)
    x = torch.randn(shape)
    weight, b = torch.randn(10, shape[-1], 1, 1), (torch.randn(10) if bias else None)
    with torch.no_grad():
        assert onednn_pointwise(x, weight)
        out = linear_nhwc(x, weight, b)
    assert out.shape == (*shape[:3], 10) and out.is_contiguous()
    torch.testing.assert_close(out.double(), _reference(x, weight, b), atol=1e-5, rtol=1e-5)


def test_training_and_tracing_take_f_linear_with_its_gradients():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 12, requires_grad=True)
    layer = ChannelsLinear(12, 8)
    assert not onednn_pointwise(x, layer.weight)  # gradients to record
    out = layer(x)
    out.square().sum().backward()
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, layer.weight, layer.bias))
    _reference(x64, w64, b64).square().sum().backward()
    for got, want in ((x.grad, x64.grad), (layer.weight.grad, w64.grad), (layer.bias.grad, b64.grad)):
        torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-5)
    with torch.no_grad():
        graph = torch.jit.trace(layer, x.detach()).graph
    assert "aten::linear" in str(graph) and "aten::_convolution" not in str(graph)  # fvcore counts a linear layer


def test_other_inputs_keep_f_linear():
    weight = torch.randn(4, 3)
    with torch.no_grad():
        assert not onednn_pointwise(torch.randn(5, 3), weight)  # not a map
        assert not onednn_pointwise(torch.randn(1, 3, 4, 3).double(), weight.double())
        assert not onednn_pointwise(torch.randn(1, 3, 4, 3).transpose(1, 2), weight)  # not contiguous


def test_a_stage_infers_what_it_computes_with_plain_linear_layers():
    """The whole stage in eval mode with and without the convolution path (switched off by asking for
    a gradient of its input, which changes nothing else)."""
    torch.manual_seed(0)
    stage = RefineStage(in_channels=16, num_classes=3, embed_dim=64, window_size=3).eval()
    feat, prev = torch.randn(1, 16, 12, 10), torch.randn(1, 3, 6, 5)
    with torch.no_grad():
        fast = stage(feat, prev)
    slow = stage(feat.requires_grad_(), prev)
    torch.testing.assert_close(fast, slow.detach(), atol=1e-5, rtol=1e-5)


def test_as_channels_linear_keeps_the_layer_its_parameters_and_the_random_stream():
    torch.manual_seed(0)
    layer = nn.Linear(6, 4)
    weight, state = layer.weight, torch.get_rng_state()
    swapped = as_channels_linear(layer)
    assert swapped is layer and isinstance(swapped, ChannelsLinear) and swapped.weight is weight
    assert torch.equal(torch.get_rng_state(), state)
    assert list(swapped.state_dict()) == ["weight", "bias"]
    with pytest.raises(TypeError, match="expected an nn.Linear"):
        as_channels_linear(nn.Conv2d(6, 4, 1))


def test_the_stage_has_the_parameters_it_had_with_timms_linear_layers():
    """Initialisation unchanged: the stage's MLP equals a timm Mlp drawn at the same point of the stream."""
    torch.manual_seed(3)
    stage = RefineStage(in_channels=16, num_classes=3, embed_dim=64, window_size=3)
    torch.manual_seed(3)
    modules = [nn.Conv2d(16, 64, 1), nn.Conv2d(3, 64, 1)]  # query, value: drawn before the SAM
    modules += [SelfAggregation(64, 2), nn.LayerNorm(64), nn.LayerNorm(64)]
    modules += [NeighbourhoodAggregation(64, 2, 3), nn.LayerNorm(64)]
    mlp = Mlp(64, 64, act_layer=nn.GELU)
    torch.testing.assert_close(stage.mlp.fc1.weight, mlp.fc1.weight, atol=0, rtol=0)
    torch.testing.assert_close(stage.mlp.fc2.bias, mlp.fc2.bias, atol=0, rtol=0)
