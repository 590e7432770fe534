"""``vit``: a small vision transformer for 28x28 and 32x32 images (Dosovitskiy et al., ICLR 2021), built so that
every method applies to it.

The image is cut into ``patch_size`` x ``patch_size`` patches, each embedded by one strided convolution (the
network's first conv, which methods leave dense by default), a learned class token and position embedding are
added, then ``depth`` pre-norm encoder blocks: multi-head self-attention whose query, key, value and output
projections are four ``nn.Linear`` layers (attention itself by ``torch.nn.functional.scaled_dot_product_attention``;
``nn.MultiheadAttention`` keeps its input projection as a bare parameter, which no method would see; its math
backend, the one whose backward can itself be differentiated, as GraSP's Hessian-gradient products need), and an
MLP of two ``nn.Linear`` layers with GELU. The head is LayerNorm and one ``nn.Linear`` on the class token (the
last linear, also left dense by default). So the fixed-rank formats, DLRT/TDLRT and any method that replaces or
prunes ``nn.Linear`` layers factorize the attention and MLP projections: ``6 * depth`` linear layers.

Defaults are sized for a CPU: width 64, depth 4, 4 heads, MLP ratio 2 (about 140k parameters at 28x28).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from harness.registry import register_model


class Attention(nn.Module):
    """Multi-head self-attention with separate ``nn.Linear`` query, key, value and output projections."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"vit: width {dim} is not divisible by the number of heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:  # (b, t, d) -> (b, heads, t, d / heads)
            return y.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)

        with sdpa_kernel(SDPBackend.MATH):  # the one backend with a double backward (GraSP's Hessian products)
            y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """A pre-norm encoder block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """Patch embedding (a strided conv), class token, position embedding, encoder blocks, LayerNorm and head."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        patch_size: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
    ):
        super().__init__()
        if patch_size < 1 or image_size % patch_size:
            raise ValueError(
                f"vit: the image size {image_size} is not a multiple of the patch size {patch_size} "
                "(28x28 images take 4 or 7, 32x32 images 4 or 8)"
            )
        if min(dim, depth, heads) < 1 or mlp_ratio <= 0:
            raise ValueError(
                f"vit: width, depth and heads must be positive, mlp_ratio > 0; got {dim}, {depth}, {heads}"
            )
        tokens = (image_size // patch_size) ** 2
        self.patch = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens + 1, dim))
        nn.init.trunc_normal_(self.pos_embedding, std=0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, max(1, round(dim * mlp_ratio))) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)  # (b, tokens, dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embedding
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


@register_model("vit", "small vision transformer (patch 4, width 64, depth 4, 4 heads) for 28x28 and 32x32 inputs")
def vit(
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: int = 28,
    patch_size: int = 4,
    dim: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_ratio: float = 2.0,
) -> nn.Module:
    """A small ViT whose attention (q, k, v, out) and MLP projections are ``nn.Linear`` layers.

    ``patch_size`` must divide ``image_size``; ``dim`` (the width) must be a multiple of ``heads``; the MLP's hidden
    width is ``round(dim * mlp_ratio)``."""
    return ViT(in_channels, num_classes, image_size, patch_size, dim, depth, heads, mlp_ratio)
