"""PyTorch reference of DocClassifier's "squeeze-head lcnet050" embedding network.

Readable top to bottom, like a timm model file::

    img  [N, 3, 128, 128] float32, BGR, values in [0, 1]
      -> timm lcnet_050 (features_only=True), last level "blocks.5": [N, 256, 4, 4]
      -> head.squeeze_feats: Conv2d(256 -> 64, k=1, bias=False), Flatten -> [N, 1024] (C-major)
      -> head.embed_feats:   Linear(1024 -> 256, bias=False), LayerNorm(256), BatchNorm1d(256),
                             Linear(256 -> 256, bias=False),  LayerNorm(256), BatchNorm1d(256)
      -> F.normalize(p=2, dim=1, eps=1e-12)                    -> feats [N, 256], unit length

Parameter names follow DocClassifier's Lightning module (``backbone.backbone.<timm keys>``,
``head.squeeze_feats.0.weight``, ``head.embed_feats.{0..5}.*``) so its checkpoints load as-is.
The model has 617,008 parameters (backbone 270,896 + head 346,112).
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .manifest import ARCHITECTURE, EMBED_DIM, INPUT_SIZE

BACKBONE_NAME = "lcnet_050"
__all__ = ["ARCHITECTURE", "BACKBONE_NAME", "EMBED_DIM", "INPUT_SIZE", "DocEmbeddingNet", "build_model",
           "count_parameters"]


class Backbone(nn.Module):
    """timm ``lcnet_050`` feature extractor; returns the last (stride-32) feature map.

    Input ``[N, 3, H, W]``; output ``[N, 256, H/32, W/32]`` (``[N, 256, 4, 4]`` at 128x128).
    """

    def __init__(self) -> None:
        super().__init__()
        # pretrained=False: weights come from a checkpoint, never from a hub at run time.
        self.backbone = timm.create_model(BACKBONE_NAME, pretrained=False, features_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats: list[torch.Tensor] = self.backbone(x)
        return feats[-1]


class FeatureLearningSqueezeLBNHead(nn.Module):
    """DocClassifier's squeeze head with LayerNorm + BatchNorm1d ("LBN").

    Input ``[N, 256, 4, 4]``; output ``[N, 256]`` (not normalized).
    """

    def __init__(
        self,
        in_channels: int = 256,
        spatial: int = 4,
        embed_dim: int = EMBED_DIM,
        squeeze_ratio: float = 0.25,
    ) -> None:
        super().__init__()
        squeezed = int(in_channels * squeeze_ratio)
        self.squeeze_feats = nn.Sequential(
            nn.Conv2d(in_channels, squeezed, kernel_size=1, bias=False),
            nn.Flatten(),
        )
        self.embed_feats = nn.Sequential(
            nn.Linear(squeezed * spatial * spatial, embed_dim, bias=False),
            nn.LayerNorm(embed_dim),
            nn.BatchNorm1d(embed_dim),
            nn.Linear(embed_dim, embed_dim, bias=False),
            nn.LayerNorm(embed_dim),
            nn.BatchNorm1d(embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.embed_feats(self.squeeze_feats(x))
        return out


class DocEmbeddingNet(nn.Module):
    """Backbone + squeeze head. ``forward`` returns unit vectors ``[N, 256]`` (as exported).

    Use ``forward_features`` for the raw, un-normalized embedding (what training losses see).
    """

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.head = FeatureLearningSqueezeLBNHead()

    def forward_features(self, img: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.backbone(img))
        return out

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward_features(img), p=2, dim=1, eps=1e-12)


def build_model() -> DocEmbeddingNet:
    """Create the reference network with timm's default initialization, in eval mode."""
    return DocEmbeddingNet().eval()


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (BatchNorm running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
