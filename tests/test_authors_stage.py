"""Stage equivalence: the authors' PNA head, re-implemented here from the facts (docs/authors_checkpoints.md,
docs/architecture.md) with their module names, and our refinement holding the converted weights give the same
P1..P4 in float64 (1e-10), for both branches' layouts (MMSeg levels pna3..pna0 with embedding
biases; Detectron2 levels res2..res5 without, with and without SAM)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pna.authors import name_table
from pna.authors.convert import Section, convert_state_dict
from pna.models import ProgressiveRefinement, get_spec

IN_CHANNELS = (16, 24, 32, 40)           # res2..res5
DIMS = (32, 64, 64, 96)                  # D of res2..res5 (heads = D / 32)
SIZES = ((12, 14), (6, 7), (4, 5), (3, 4))     # res2..res5, all at least the window
CLASSES, WINDOW = 5, 3


class BodyLayerNorm(nn.Module):
    """Restormer's LayerNorm with bias over the channels of NCHW maps (parameters in ``.body``)."""

    def __init__(self, dim):
        super().__init__()
        self.body = nn.Module()
        self.body.weight, self.body.bias = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = ((x - mean) ** 2).mean(1, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-5) * self.body.weight[:, None, None] + self.body.bias[:, None, None]


class ChannelAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w) for t in self.qkv_dwconv(self.qkv(x)).chunk(3, 1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class GatedFFN(nn.Module):
    def __init__(self, dim):
        super().__init__()
        hidden = int(dim * 2.66)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=False)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x):
        gate, value = self.dwconv(self.project_in(x)).chunk(2, 1)  # first half: the GELU branch
        return self.project_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):  # SAM
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.attn = BodyLayerNorm(dim), ChannelAttention(dim, heads)
        self.norm2, self.ffn = BodyLayerNorm(dim), GatedFFN(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def window_start(i, n, window):
    """NATTEN: the window is shifted inward at the borders, never padded (docs/architecture.md)."""
    r = window // 2
    return max(i - r, 0) + (n - 1 - r - i if i + r >= n else 0)


class NeighborhoodCrossAttention(nn.Module):
    """q, k from x (fused ``qk``: rows 0..D-1 q, D..2D-1 k, head-major), v from ``embed_v``; each query
    attends to its L x L window (gathered by index) with bias rpb[:, key_row - row + L - 1, key_col - col + L - 1]."""

    def __init__(self, dim, heads, window):
        super().__init__()
        self.heads, self.window = heads, window
        self.rpb = nn.Parameter(torch.zeros(heads, 2 * window - 1, 2 * window - 1))
        self.qk, self.embed_v, self.proj = nn.Linear(dim, 2 * dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x, v):
        b, h, w, dim = x.shape
        qk = self.qk(x).reshape(b, h, w, 2, self.heads, dim // self.heads)
        q, k = qk[..., 0, :, :] * (dim // self.heads) ** -0.5, qk[..., 1, :, :]
        v = self.embed_v(v).reshape(b, h, w, self.heads, dim // self.heads)
        size = self.window
        # every query's key rows / cols (NATTEN windows), as index grids (h, w, L)
        rows = torch.tensor([[[window_start(i, h, size) + a for a in range(size)] for _ in range(w)] for i in range(h)])
        cols = torch.tensor([[[window_start(j, w, size) + a for a in range(size)] for j in range(w)] for _ in range(h)])
        r_idx, c_idx = rows[:, :, :, None], cols[:, :, None, :]                  # (h, w, L, 1), (h, w, 1, L)
        keys, values = k[:, r_idx, c_idx], v[:, r_idx, c_idx]                   # (b, h, w, L, L, heads, d)
        logits = torch.einsum("bijnd,bijxynd->bnijxy", q, keys)
        i_idx, j_idx = torch.arange(h)[:, None, None], torch.arange(w)[None, :, None]
        bias = self.rpb[:, (rows - i_idx + size - 1)[:, :, :, None], (cols - j_idx + size - 1)[:, :, None, :]]
        weights = (logits + bias[None]).flatten(4).softmax(-1).reshape(logits.shape)
        out = torch.einsum("bnijxy,bijxynd->bijnd", weights, values)
        return self.proj(out.flatten(3))


class Mlp(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class PNALayer(nn.Module):
    def __init__(self, dim, window, use_sa):
        super().__init__()
        self.atten1 = TransformerBlock(dim, dim // 32) if use_sa else nn.Identity()
        self.norm1, self.norm1_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = NeighborhoodCrossAttention(dim, dim // 32, window)
        self.norm2, self.mlp, self.out_norm = nn.LayerNorm(dim), Mlp(dim), nn.LayerNorm(dim)

    def forward(self, x, v):  # NCHW in and out
        shortcut = self.atten1(x).permute(0, 2, 3, 1)
        x = self.attn(self.norm1(x.permute(0, 2, 3, 1)), self.norm1_2(v.permute(0, 2, 3, 1))) + shortcut
        x = x + self.mlp(self.norm2(x))
        return self.out_norm(x).permute(0, 3, 1, 2)


class TheirPNAHead(nn.Module):
    """Levels keyed ``pna0..pna3`` (MMSeg) or ``res2..res5`` (Detectron2); processed res5 -> res2."""

    def __init__(self, levels, embed_bias, use_sa=True):
        super().__init__()
        self.levels = levels  # name of res2, res3, res4, res5
        self.patch_embeds, self.value_embeds = nn.ModuleDict(), nn.ModuleDict()
        self.stages, self.conv_seg_layers = nn.ModuleDict(), nn.ModuleDict()
        order = range(4) if levels[0] == "res2" else range(3, -1, -1)  # the order their dicts are filled in
        for i in order:
            name, dim = levels[i], DIMS[i]
            self.patch_embeds[name] = nn.Conv2d(IN_CHANNELS[i], dim, 1, bias=embed_bias)
            self.value_embeds[name] = nn.Conv2d(CLASSES, dim, 1, bias=embed_bias)
            block = nn.Module()
            block.blocks = nn.ModuleList([PNALayer(dim, WINDOW, use_sa)])
            self.stages[name] = block
            self.conv_seg_layers[name] = nn.Conv2d(dim, CLASSES, 1)

    def forward(self, coarse, feats):
        value, outs = coarse, []
        for i in range(3, -1, -1):
            name = self.levels[i]
            value = F.interpolate(value, size=feats[i].shape[-2:], mode="nearest")
            x = self.stages[name].blocks[0](self.patch_embeds[name](feats[i]), self.value_embeds[name](value))
            value = self.conv_seg_layers[name](x)
            outs.append(value)
        return outs


def randomise(module, gen):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(("norm1.weight", "norm1_2.weight", "norm2.weight", "out_norm.weight", "body.weight",
                              "temperature")):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            else:
                fan_in = math.prod(p.shape[1:]) if p.dim() > 1 else 4
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / math.sqrt(fan_in))


@pytest.mark.parametrize("branch, model, levels, embed_bias, use_sa", [
    ("mm", "fcn_r50_os32_pna", ("pna0", "pna1", "pna2", "pna3"), True, True),
    ("d2", "fpn_r52_pna", ("res2", "res3", "res4", "res5"), False, True),
    ("d2", "fpn_r52_pna", ("res2", "res3", "res4", "res5"), False, False),
])
def test_converted_stages_compute_their_stages(branch, model, levels, embed_bias, use_sa):
    gen = torch.Generator().manual_seed(0)
    theirs = TheirPNAHead(levels, embed_bias, use_sa).double()
    randomise(theirs, gen)
    ours = ProgressiveRefinement(IN_CHANNELS, CLASSES, tuple(reversed(DIMS)), window_size=WINDOW, use_sam=use_sa,
                                 embed_bias=embed_bias).double().eval()
    spec = get_spec(model, embed_bias=embed_bias, refine="nam+sam" if use_sa else "nam")
    refinement = next(s for s in name_table(spec, branch)[0] if s.label == "refinement")  # the row's real table
    converted, report = convert_state_dict(theirs.state_dict(), ours.state_dict(),
                                           [Section("refinement", "", "", refinement.rename)], branch)
    ours.load_state_dict(converted)
    assert len(report.mapping) == len(ours.state_dict()) and not report.unused

    feats = [torch.randn(2, c, *s, generator=gen, dtype=torch.float64) for c, s in zip(IN_CHANNELS, SIZES)]
    coarse_size = SIZES[3] if branch == "mm" else SIZES[0]  # FCN at stride 32; the d2 FPN head at stride 4
    coarse = torch.randn(2, CLASSES, *coarse_size, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        expected, got = theirs(coarse, feats), ours(feats, coarse)
    for stage, (e, g) in enumerate(zip(expected, got), start=1):
        assert e.shape == g.shape == (2, CLASSES, *SIZES[4 - stage])
        assert (e - g).abs().max().item() < 1e-10, f"P{stage}"
