"""resize_to's CPU matrix-product path (training-time upsampling of small maps) against F.interpolate,
the reference it replaces: values and gradients in float64, and the traced graph fvcore counts."""
import pytest
import torch
import torch.nn.functional as F

from pna.models.resize import SEPARABLE_MAX_SIDE, interpolation_weights, resize_to


def reference(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("size_in, size_out", [((4, 4), (16, 16)), ((5, 7), (16, 9)), ((32, 32), (128, 128)),
                                                ((64, 48), (512, 384)), ((16, 16), (7, 5)), ((1, 3), (4, 4))])
def test_the_matrix_products_equal_f_interpolate_in_value_and_gradient(size_in, size_out):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size_in, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out, out_ref = resize_to(x, size_out), reference(x_ref, size_out)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-12)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    out_ref.backward(upstream)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-11)


def test_the_weights_are_the_hand_computed_ones():
    # 2 -> 4 (scale 0.5): sources -0.25 (clamped 0), 0.25, 0.75, 1.25 (the last input twice)
    assert interpolation_weights(2, 4, torch.float64).tolist() == [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]]
    # 3 -> 2 (scale 1.5): sources 0.25 and 1.75
    assert interpolation_weights(3, 2, torch.float64).tolist() == [[0.75, 0.25, 0], [0, 0.25, 0.75]]


def traced_ops(x):
    graph = torch.jit.trace(lambda t: resize_to(t, (64, 64)), (x,), check_trace=False).graph
    return {node.kind() for node in graph.nodes()}


def test_traces_and_large_maps_take_f_interpolate():
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    assert "aten::upsample_bilinear2d" in traced_ops(x) and "aten::matmul" not in traced_ops(x)
    big = torch.randn(1, 1, SEPARABLE_MAX_SIDE + 1, 8, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(resize_to(big, (70, 9)), reference(big, (70, 9)), rtol=0, atol=0)
