"""Stage equivalence: the authors' PNA head, written here a second time in another form from the facts
(docs/architecture.md, docs/authors_checkpoints.md): plain float64 functions that read a state dict by
the authors' key names, with per-head loops and einsums, NATTEN's window start and a hand-written
nearest resize, depthwise convolution, LayerNorm and GELU. Our refinement holding the converted weights
must give the same P1..P4 (1e-10), for both branches' layouts (MMSeg levels pna3..pna0 with embedding
biases; Detectron2 levels res2..res5 without, with and without SAM). Nothing here calls our modules, so a
bug shared by the two would have to be written twice."""
import math

import pytest
import torch

from pna.authors import name_table
from pna.authors.convert import Section, convert_state_dict
from pna.models import ProgressiveRefinement, get_spec
from na_reference import natten_start  # the window rule, written once for the tests

IN_CHANNELS = (16, 24, 32, 40)           # res2..res5
DIMS = (32, 64, 64, 96)                  # D of res2..res5 (heads = D / 32)
SIZES = ((12, 14), (6, 7), (4, 5), (3, 4))     # res2..res5, all at least the window
CLASSES, WINDOW = 5, 3
HEAD_DIM = 32                            # docs/architecture.md: heads = D / 32
EPS = 1e-5                               # every LayerNorm (the SAM's: docs; the others: nn.LayerNorm's default)
GDFN_EXPANSION = 2.66


# ---- the authors' parameters, by their key names and shapes (docs/authors_checkpoints.md) --------------
def their_shapes(level: int, key: str, embed_bias: bool, use_sa: bool) -> dict[str, tuple[int, ...]]:
    d, c_in, heads, hidden = DIMS[level], IN_CHANNELS[level], DIMS[level] // HEAD_DIM, int(DIMS[level] * GDFN_EXPANSION)
    block = f"stages.{key}.blocks.0"
    shapes = {f"patch_embeds.{key}.weight": (d, c_in, 1, 1), f"value_embeds.{key}.weight": (d, CLASSES, 1, 1)}
    if embed_bias:
        shapes |= {f"patch_embeds.{key}.bias": (d,), f"value_embeds.{key}.bias": (d,)}
    if use_sa:
        sam = f"{block}.atten1"
        shapes |= {f"{sam}.norm1.body.weight": (d,), f"{sam}.norm1.body.bias": (d,),
                   f"{sam}.attn.temperature": (heads, 1, 1), f"{sam}.attn.qkv.weight": (3 * d, d, 1, 1),
                   f"{sam}.attn.qkv_dwconv.weight": (3 * d, 1, 3, 3), f"{sam}.attn.project_out.weight": (d, d, 1, 1),
                   f"{sam}.norm2.body.weight": (d,), f"{sam}.norm2.body.bias": (d,),
                   f"{sam}.ffn.project_in.weight": (2 * hidden, d, 1, 1),
                   f"{sam}.ffn.dwconv.weight": (2 * hidden, 1, 3, 3), f"{sam}.ffn.project_out.weight": (d, hidden, 1, 1)}
    for norm in ("norm1", "norm1_2", "norm2", "out_norm"):
        shapes |= {f"{block}.{norm}.weight": (d,), f"{block}.{norm}.bias": (d,)}
    shapes |= {f"{block}.attn.rpb": (heads, 2 * WINDOW - 1, 2 * WINDOW - 1),
               f"{block}.attn.qk.weight": (2 * d, d), f"{block}.attn.qk.bias": (2 * d,)}
    for linear in ("attn.embed_v", "attn.proj", "mlp.fc1", "mlp.fc2"):
        shapes |= {f"{block}.{linear}.weight": (d, d), f"{block}.{linear}.bias": (d,)}
    return shapes | {f"conv_seg_layers.{key}.weight": (CLASSES, d, 1, 1), f"conv_seg_layers.{key}.bias": (CLASSES,)}


def their_state(levels, embed_bias: bool, use_sa: bool, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random float64 weights: norm scales and temperatures near 1, the rest ~ 1 / sqrt(fan in)."""
    state = {}
    order = range(4) if levels[0] == "res2" else range(3, -1, -1)  # the order their dicts are filled in
    for level in order:
        for key, shape in their_shapes(level, levels[level], embed_bias, use_sa).items():
            noise = torch.randn(shape, generator=gen, dtype=torch.float64)
            if "norm" in key and key.endswith("weight") or key.endswith("temperature"):
                state[key] = 1 + 0.2 * noise
            else:
                state[key] = noise / math.sqrt(math.prod(shape[1:]) if len(shape) > 1 else 4)
    return state


# ---- their stage as plain functions --------------------------------------------------------------------
def conv1x1(x, weight, bias=None):
    out = torch.einsum("oc,bchw->bohw", weight[:, :, 0, 0], x)
    return out if bias is None else out + bias[None, :, None, None]


def depthwise3x3(x, weight):
    """Zero padding 1, one 3x3 filter per channel, no bias."""
    h, w = x.shape[-2:]
    padded = torch.zeros(*x.shape[:2], h + 2, w + 2, dtype=x.dtype)
    padded[..., 1:-1, 1:-1] = x
    return sum(weight[None, :, 0, a, b, None, None] * padded[..., a:a + h, b:b + w] for a in range(3) for b in range(3))


def layer_norm(x, weight, bias, dim):
    mean = x.mean(dim, keepdim=True)
    var = ((x - mean) ** 2).mean(dim, keepdim=True)
    shape = [1] * x.ndim
    shape[dim] = -1
    return (x - mean) / torch.sqrt(var + EPS) * weight.reshape(shape) + bias.reshape(shape)


def gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def softmax(x, dim):
    e = torch.exp(x - x.amax(dim, keepdim=True))
    return e / e.sum(dim, keepdim=True)


def linear(x, state, name):
    return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]


def restormer_block(x, s, p):
    """SAM on NCHW: x + MDTA(LN(x)), then + GDFN(LN(x)); per-head channel attention over positions."""
    b, d, h, w = x.shape
    y = layer_norm(x, s[f"{p}.norm1.body.weight"], s[f"{p}.norm1.body.bias"], 1)
    qkv = depthwise3x3(conv1x1(y, s[f"{p}.attn.qkv.weight"]), s[f"{p}.attn.qkv_dwconv.weight"])
    out = torch.zeros(b, d, h * w, dtype=x.dtype)
    for head in range(d // HEAD_DIM):
        ch = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
        q, k, v = (qkv[:, part * d:(part + 1) * d][:, ch].reshape(b, HEAD_DIM, h * w) for part in range(3))
        q, k = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)  # L2 over positions
        attn = softmax(torch.einsum("bip,bjp->bij", q, k) * s[f"{p}.attn.temperature"][head, 0, 0], -1)
        out[:, ch] = torch.einsum("bij,bjp->bip", attn, v)
    x = x + conv1x1(out.reshape(b, d, h, w), s[f"{p}.attn.project_out.weight"])
    y = layer_norm(x, s[f"{p}.norm2.body.weight"], s[f"{p}.norm2.body.bias"], 1)
    z = depthwise3x3(conv1x1(y, s[f"{p}.ffn.project_in.weight"]), s[f"{p}.ffn.dwconv.weight"])
    hidden = z.shape[1] // 2  # the first half is the GELU branch
    return x + conv1x1(gelu(z[:, :hidden]) * z[:, hidden:], s[f"{p}.ffn.project_out.weight"])


def neighbourhood_cross_attention(x, v, s, p):
    """x, v (B, h, w, D), already normalised: q, k from x, values from v; per pixel and head the L x L
    NATTEN window with the bias rpb[head, key_row - row + L - 1, key_col - col + L - 1]."""
    b, h, w, d = x.shape
    weight, bias = s[f"{p}.qk.weight"], s[f"{p}.qk.bias"]
    q = (x @ weight[:d].T + bias[:d]) * HEAD_DIM ** -0.5
    k = x @ weight[d:].T + bias[d:]
    values = linear(v, s, f"{p}.embed_v")
    out = torch.zeros(b, h, w, d, dtype=x.dtype)
    for i in range(h):
        for j in range(w):
            top, left = natten_start(i, h, WINDOW), natten_start(j, w, WINDOW)
            rows, cols = slice(top, top + WINDOW), slice(left, left + WINDOW)
            for head in range(d // HEAD_DIM):
                ch = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
                logits = torch.einsum("bc,bxyc->bxy", q[:, i, j, ch], k[:, rows, cols, ch])
                logits = logits + s[f"{p}.rpb"][head, top - i + WINDOW - 1:top - i + 2 * WINDOW - 1,
                                                left - j + WINDOW - 1:left - j + 2 * WINDOW - 1]
                weights = softmax(logits.reshape(b, -1), -1).reshape(b, WINDOW, WINDOW)
                out[:, i, j, ch] = torch.einsum("bxy,bxyc->bc", weights, values[:, rows, cols, ch])
    return linear(out, s, f"{p}.proj")


def nearest(x, size):
    """Nearest resize: output index i reads input floor(i * in / out)."""
    rows = [math.floor(i * x.shape[-2] / size[0]) for i in range(size[0])]
    cols = [math.floor(j * x.shape[-1] / size[1]) for j in range(size[1])]
    return x[..., rows, :][..., cols]


def their_head(s, levels, use_sa, coarse, feats):
    """Stages res5 -> res2; each refines the previous logits with its feature; returns P1..P4."""
    value, outs = coarse, []
    for level in range(3, -1, -1):
        key = levels[level]
        p = f"stages.{key}.blocks.0"
        x = conv1x1(feats[level], s[f"patch_embeds.{key}.weight"], s.get(f"patch_embeds.{key}.bias"))
        v = conv1x1(nearest(value, feats[level].shape[-2:]), s[f"value_embeds.{key}.weight"], s.get(f"value_embeds.{key}.bias"))
        shortcut = (restormer_block(x, s, f"{p}.atten1") if use_sa else x).permute(0, 2, 3, 1)
        x, v = x.permute(0, 2, 3, 1), v.permute(0, 2, 3, 1)
        y = neighbourhood_cross_attention(layer_norm(x, s[f"{p}.norm1.weight"], s[f"{p}.norm1.bias"], -1),
                                          layer_norm(v, s[f"{p}.norm1_2.weight"], s[f"{p}.norm1_2.bias"], -1),
                                          s, f"{p}.attn") + shortcut
        y = y + linear(gelu(linear(layer_norm(y, s[f"{p}.norm2.weight"], s[f"{p}.norm2.bias"], -1), s, f"{p}.mlp.fc1")),
                       s, f"{p}.mlp.fc2")
        y = layer_norm(y, s[f"{p}.out_norm.weight"], s[f"{p}.out_norm.bias"], -1).permute(0, 3, 1, 2)
        value = conv1x1(y, s[f"conv_seg_layers.{key}.weight"], s[f"conv_seg_layers.{key}.bias"])
        outs.append(value)
    return outs


@pytest.mark.parametrize("branch, model, levels, embed_bias, use_sa", [
    ("mm", "fcn_r50_os32_pna", ("pna0", "pna1", "pna2", "pna3"), True, True),
    ("d2", "fpn_r52_pna", ("res2", "res3", "res4", "res5"), False, True),
    ("d2", "fpn_r52_pna", ("res2", "res3", "res4", "res5"), False, False),
])
def test_converted_stages_compute_their_stages(branch, model, levels, embed_bias, use_sa):
    gen = torch.Generator().manual_seed(0)
    theirs = their_state(levels, embed_bias, use_sa, gen)
    ours = ProgressiveRefinement(IN_CHANNELS, CLASSES, tuple(reversed(DIMS)), window_size=WINDOW, use_sam=use_sa,
                                 embed_bias=embed_bias).double().eval()
    spec = get_spec(model, embed_bias=embed_bias, refine="nam+sam" if use_sa else "nam")
    refinement = next(s for s in name_table(spec, branch)[0] if s.label == "refinement")  # the row's real table
    converted, report = convert_state_dict(theirs, ours.state_dict(), [Section("refinement", "", "", refinement.rename)],
                                           branch)
    ours.load_state_dict(converted)
    assert len(report.mapping) == len(ours.state_dict()) == len(theirs) and not report.unused

    feats = [torch.randn(2, c, *s, generator=gen, dtype=torch.float64) for c, s in zip(IN_CHANNELS, SIZES)]
    coarse_size = SIZES[3] if branch == "mm" else SIZES[0]  # FCN at stride 32; the d2 FPN head at stride 4
    coarse = torch.randn(2, CLASSES, *coarse_size, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        expected, got = their_head(theirs, levels, use_sa, coarse, feats), ours(feats, coarse)
    for stage, (e, g) in enumerate(zip(expected, got), start=1):
        assert e.shape == g.shape == (2, CLASSES, *SIZES[4 - stage])
        assert (e - g).abs().max().item() < 1e-10, f"P{stage}"
