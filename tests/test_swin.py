"""Swin backbones through timm: NCHW pyramid, any size divisible by 32, local weights, loud random init."""
import warnings

import pytest
import timm
import torch

from pna.models.backbones import build_backbone
from pna.models.backbones.swin import SWINS, SwinBackbone


@pytest.fixture(scope="module")
def swin_t():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SwinBackbone("swin_t")


@pytest.mark.parametrize("size", [(64, 64), (96, 160)])
def test_pyramid_is_channels_first_at_strides_4_to_32(swin_t, size):
    feats = swin_t.eval()(torch.randn(1, 3, *size))
    assert [tuple(f.shape) for f in feats] == [
        (1, c, size[0] // s, size[1] // s) for c, s in zip([96, 192, 384, 768], [4, 8, 16, 32])]
    assert swin_t.out_channels == [96, 192, 384, 768] and swin_t.strides == [4, 8, 16, 32]


def test_window_7_and_shift_3_kept_on_small_maps(swin_t):
    blocks = [b for layer in swin_t.body.layers for b in layer.blocks]
    assert [tuple(b.window_size) for b in blocks] == [(7, 7)] * 12
    assert [tuple(b.shift_size) for b in blocks] == [(0, 0), (3, 3)] * 6
    assert [len(layer.blocks) for layer in swin_t.body.layers] == [2, 2, 6, 2]


def test_every_parameter_gets_a_gradient(swin_t):
    swin_t.train()
    swin_t.zero_grad()
    sum(f.mean() for f in swin_t(torch.randn(2, 3, 64, 64))).backward()
    missing = [n for n, p in swin_t.named_parameters() if p.grad is None]
    assert not missing


def test_bad_inputs_raise(swin_t):
    with pytest.raises(ValueError, match="multiples of 32"):
        swin_t(torch.randn(1, 3, 64, 80))
    with pytest.raises(ValueError, match="output stride 32"):
        build_backbone("swin_t", output_stride=16)
    with pytest.raises(ValueError, match="unknown Swin"):
        SwinBackbone("swin_l")
    with pytest.raises(FileNotFoundError, match="not_here.pth"):
        SwinBackbone("swin_t", pretrained="/nonexistent/not_here.pth")


def test_random_init_is_said_loudly():
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        SwinBackbone("swin_t")


def test_local_imagenet_checkpoint_is_loaded(tmp_path, swin_t):
    # A classification checkpoint in timm's layout (head and final norm included), as a user would have.
    reference = timm.create_model(SWINS["swin_t"], pretrained=False)
    torch.nn.init.normal_(reference.layers[2].blocks[3].attn.qkv.weight)
    path = tmp_path / "swin_tiny_imagenet.pth"
    torch.save(reference.state_dict(), path)
    loaded = SwinBackbone("swin_t", pretrained=path)
    key = "layers.2.blocks.3.attn.qkv.weight"
    assert torch.equal(loaded.body.state_dict()[key], reference.state_dict()[key])
    assert not torch.equal(swin_t.body.state_dict()[key], reference.state_dict()[key])


def test_swin_b_widths_and_depths():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = build_backbone("swin_b")
    assert net.out_channels == [128, 256, 512, 1024]
    assert [len(layer.blocks) for layer in net.body.layers] == [2, 2, 18, 2]


# ---- shifted windows in MMSeg's order (pad, roll, mask over the padded map) -------------------------
# An independent float64 re-derivation of one shifted Swin block as MMSeg 0.27's ShiftWindowMSA computes
# it (the authors' copy, mmsegmentation:mmseg/models/backbones/swin.py:180-254): pad the map bottom/right
# with zeros to a multiple of the window, roll it by -shift, label each position of the padded, rolled
# map by its band (rows/cols [0, P-w), [P-w, P-s), [P-s, P)), attend within each window with the
# relative-position bias and -100 between positions of different labels, un-roll, crop.
WINDOW, SHIFT = 7, 3


def _band(n: int) -> torch.Tensor:
    label = torch.zeros(n, dtype=torch.long)
    label[n - WINDOW:n - SHIFT] = 1
    label[n - SHIFT:] = 2
    return label


def _relative_index(w: int) -> torch.Tensor:
    """MMSeg's table index: a step sequence (2w-1 per row, 1 per column) added to its own transpose, the
    columns flipped (mmsegmentation:mmseg/models/backbones/swin.py:66-68)."""
    seq = (torch.arange(w)[:, None] * (2 * w - 1) + torch.arange(w)[None, :]).reshape(1, -1)
    return (seq + seq.T).flip(1)


def mmseg_shifted_attention(x, attn) -> torch.Tensor:
    """x: (B, H, W, C) float64 after the block's first LayerNorm; ``attn``: timm WindowAttention tensors."""
    b, h, w, c = x.shape
    heads = attn.num_heads
    ph, pw = -(-h // WINDOW) * WINDOW, -(-w // WINDOW) * WINDOW
    padded = x.new_zeros(b, ph, pw, c)
    padded[:, :h, :w] = x
    rolled = torch.roll(padded, (-SHIFT, -SHIFT), (1, 2))
    label = _band(ph)[:, None] * 3 + _band(pw)[None, :]
    bias = attn.relative_position_bias_table.double()[_relative_index(WINDOW).reshape(-1)]
    bias = bias.reshape(WINDOW ** 2, WINDOW ** 2, heads).permute(2, 0, 1)
    out = torch.zeros_like(rolled)
    for top in range(0, ph, WINDOW):
        for left in range(0, pw, WINDOW):
            tokens = rolled[:, top:top + WINDOW, left:left + WINDOW].reshape(b, -1, c)
            qkv = torch.nn.functional.linear(tokens, attn.qkv.weight.double(), attn.qkv.bias.double())
            q, k, v = (t.reshape(b, -1, heads, c // heads).transpose(1, 2) for t in qkv.split(c, -1))
            region = label[top:top + WINDOW, left:left + WINDOW].reshape(-1)
            mask = (region[:, None] != region[None, :]).double() * -100.0
            logits = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1) + bias + mask
            y = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, -1, c)
            y = torch.nn.functional.linear(y, attn.proj.weight.double(), attn.proj.bias.double())
            out[:, top:top + WINDOW, left:left + WINDOW] = y.reshape(b, WINDOW, WINDOW, c)
    return torch.roll(out, (SHIFT, SHIFT), (1, 2))[:, :h, :w]


def mmseg_shifted_block(x, block) -> torch.Tensor:
    """The whole block (pre-norm attention, then the pre-norm MLP, both residual), in float64."""
    def ln(t, norm):
        return torch.nn.functional.layer_norm(t, t.shape[-1:], norm.weight.double(), norm.bias.double(), norm.eps)
    x = x + mmseg_shifted_attention(ln(x, block.norm1), block.attn)
    hidden = torch.nn.functional.gelu(torch.nn.functional.linear(ln(x, block.norm2), block.mlp.fc1.weight.double(),
                                                                 block.mlp.fc1.bias.double()))
    return x + torch.nn.functional.linear(hidden, block.mlp.fc2.weight.double(), block.mlp.fc2.bias.double())


@pytest.fixture(scope="module")
def shifted_block(swin_t):
    block = swin_t.body.layers[2].blocks[1]  # stage 3 (384 channels, 12 heads), a shifted block
    assert tuple(block.shift_size) == (SHIFT, SHIFT) and tuple(block.window_size) == (WINDOW, WINDOW)
    with torch.no_grad():  # a non-trivial position-bias table (ImageNet-trained tables are not zero)
        block.attn.relative_position_bias_table.normal_(0, 1.0)
    return block.eval()


@pytest.mark.parametrize("size", [(16, 16), (14, 14), (16, 10)])  # needs padding; a multiple of 7; mixed
def test_shifted_block_equals_mmseg_order_in_float64(shifted_block, size):
    import copy
    block = copy.deepcopy(shifted_block).double()
    x = torch.randn(2, *size, block.attn.qkv.in_features, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, expected = block(x), mmseg_shifted_block(x, block)
    assert torch.allclose(ours, expected, atol=1e-10, rtol=0)


def _rows_changed_by_row0(block, size=16):
    x = torch.randn(1, size, size, block.attn.qkv.in_features, generator=torch.Generator().manual_seed(1))
    y = x.clone()
    y[:, 0] = torch.randn(y[:, 0].shape, generator=torch.Generator().manual_seed(2))  # not a per-token constant: LN removes those
    with torch.no_grad():
        diff = (block(x) - block(y)).abs().amax(dim=(0, 2, 3))
    return [i for i, d in enumerate(diff.tolist()) if d > 1e-6]


def test_changing_row_0_reaches_only_the_rows_it_borders_after_the_shift(shifted_block):
    # 16 rows pad to 21, roll by -3: rows 0..2 land in the last band (positions 18..20), alone with each
    # other; rolled first (timm 1.0.31's order), row 0 would share a window and band with rows 10..15.
    assert _rows_changed_by_row0(shifted_block) == [0, 1, 2]
    assert _rows_changed_by_row0(shifted_block, 14) == [0, 1, 2]  # 14 = 2 windows, nothing padded
