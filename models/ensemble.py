"""Deep ensembles (Lakshminarayanan et al. 2017), packed into one vectorised network.

M `SmallCNN` members become one network whose forward computes all members at once
(the layout of Packed-Ensembles, Laurent et al. 2023, with alpha=M, gamma=1):

- the first conv concatenates the members' output channels (all read the same input);
- later convs use ``groups=M``, so member m's channels only see member m's channels;
- BatchNorm is per channel, so stacking the members' BN parameters and running
  statistics is exact (in eval mode; in train mode too, as batch statistics are
  per channel);
- fc layers are batched matmuls with stacked ``[M, out, in]`` weights.

The packing is exact: `PackedEnsemble` equals the loop over members. Because no
member reads another's channels, training the packed network with `ensemble_loss`
is also exactly M independent trainings that share the batch order (diversity then
comes from the random initialisation, which the paper finds to be the main source).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from models.architectures import SmallCNN
from models.base import UncertaintyModel


class PackedEnsemble(UncertaintyModel):
    """M SmallCNN members in one forward. `features` -> ``[M, B, D]``, `head_samples` -> ``[M, B, K]``."""

    method = "ensemble"

    def __init__(
        self,
        members: int = 5,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        widths: tuple[int, ...] | list[int] = (16, 32, 64),
        hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if members < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = m = int(members)
        chans = [in_channels, *widths]
        blocks = []
        for i, (a, b) in enumerate(itertools.pairwise(chans)):
            # Block 0: shared input, M*b output channels; later blocks: M groups of a -> b.
            conv = nn.Conv2d(a if i == 0 else m * a, m * b, 3, padding=1, bias=False, groups=1 if i == 0 else m)
            blocks.append(nn.Sequential(conv, nn.BatchNorm2d(m * b), nn.ReLU(inplace=True), nn.MaxPool2d(2)))
        self.conv = nn.Sequential(*blocks)
        side = input_size
        for _ in widths:
            side //= 2
        self.flat_dim = widths[-1] * side * side
        self.hidden_dim = self.feature_dim = hidden
        self.num_classes = num_classes
        self.dropout = dropout
        self.fc1_weight = nn.Parameter(torch.zeros(m, hidden, self.flat_dim))
        self.fc1_bias = nn.Parameter(torch.zeros(m, hidden))
        self.fc2_weight = nn.Parameter(torch.zeros(m, num_classes, hidden))
        self.fc2_bias = nn.Parameter(torch.zeros(m, num_classes))

    def method_params(self) -> dict[str, Any]:
        """JSON-able hyperparameters for the manifest's `method_params`."""
        return {"members": self.members}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # [B, C, H, W] -> conv [B, M*C', h, w] -> [M, B, F] -> [M, B, D]
        b = x.shape[0]
        # Member m owns channels [m*C', (m+1)*C'), so a view splits them in SmallCNN's order.
        flat = self.conv(x).reshape(b, self.members, self.flat_dim).transpose(0, 1)
        flat = nn.functional.dropout(flat, self.dropout, self.training)
        return torch.relu(torch.baddbmm(self.fc1_bias.unsqueeze(1), flat, self.fc1_weight.transpose(1, 2)))

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per member, each block's output averaged over space, then the hidden features.

        Returns ``[M, B, widths[l]]`` per block and ``[M, B, D]``: member m's block output
        is channels [m*C_l, (m+1)*C_l), exactly `SmallCNN.forward_layers` of member m.
        """
        b, m = x.shape[0], self.members
        pooled, h = [], x
        for block in self.conv:
            h = block(h)  # [B, M*C_l, H_l, W_l]
            pooled.append(h.mean((2, 3)).reshape(b, m, -1).transpose(0, 1))
        flat = nn.functional.dropout(h.reshape(b, m, self.flat_dim).transpose(0, 1), self.dropout, self.training)
        hidden = torch.relu(torch.baddbmm(self.fc1_bias.unsqueeze(1), flat, self.fc1_weight.transpose(1, 2)))
        return [*pooled, hidden]

    def head_samples(self, feats: torch.Tensor) -> torch.Tensor:
        # [M, B, D] -> [M, B, K]
        feats = nn.functional.dropout(feats, self.dropout, self.training)
        return torch.baddbmm(self.fc2_bias.unsqueeze(1), feats, self.fc2_weight.transpose(1, 2))


def pack_ensemble(members: list[SmallCNN]) -> PackedEnsemble:
    """Pack trained (or freshly initialised) members exactly into one `PackedEnsemble`.

    All members must share the architecture's hyperparameters; the copy is of values,
    so the packed model does not alias the members' tensors.
    """
    if not members:
        raise ValueError("pack_ensemble needs at least one member")
    first = members[0]
    convs = [blk[0] for blk in first.conv]
    packed = PackedEnsemble(
        members=len(members),
        in_channels=convs[0].in_channels,
        num_classes=first.num_classes,
        input_size=_input_size(first),
        widths=[c.out_channels for c in convs],
        hidden=first.hidden_dim,
        dropout=first.dropout,
    )
    with torch.no_grad():
        for i, block in enumerate(packed.conv):
            conv, bn = block[0], block[1]
            # Grouped conv weight [M*out, in, k, k] is the members' weights stacked on dim 0.
            conv.weight.copy_(torch.cat([mem.conv[i][0].weight for mem in members]))
            src_bns = [mem.conv[i][1] for mem in members]
            if any(s.eps != bn.eps for s in src_bns):
                raise ValueError("members' BatchNorm eps differ from the packed network's")
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(torch.cat([getattr(s, name) for s in src_bns]))
            bn.num_batches_tracked.copy_(src_bns[0].num_batches_tracked)
        packed.fc1_weight.copy_(torch.stack([mem.fc1.weight for mem in members]))
        packed.fc1_bias.copy_(torch.stack([mem.fc1.bias for mem in members]))
        packed.fc2_weight.copy_(torch.stack([mem.fc2.weight for mem in members]))
        packed.fc2_bias.copy_(torch.stack([mem.fc2.bias for mem in members]))
    return packed


def new_ensemble(members: int = 5, **arch_params: Any) -> PackedEnsemble:
    """A freshly initialised packed ensemble to train with `ensemble_loss`.

    Members are built one by one so each gets SmallCNN's own initialisation
    (independent draws from the global RNG; seed it with `torch.manual_seed`).
    """
    return pack_ensemble([SmallCNN(**arch_params) for _ in range(members)])


def _input_size(net: SmallCNN) -> int:
    # SmallCNN does not store its input size; recover the smallest one giving flat_dim.
    widths = [blk[0].out_channels for blk in net.conv]
    side = round((net.flat_dim / widths[-1]) ** 0.5)
    return side * 2 ** len(widths)


def ensemble_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over members of each member's mean cross-entropy; logits ``[M, B, K]``, labels ``[B]``.

    Summing (not averaging) gives every member the gradient it would get trained alone.
    """
    m, b, k = logits.shape
    return nn.functional.cross_entropy(logits.reshape(m * b, k), labels.repeat(m), reduction="sum") / b


def build_ensemble(arch: str, arch_params: dict[str, Any], method_params: dict[str, Any]) -> UncertaintyModel:
    """METHODS builder: an empty `PackedEnsemble` of ``method_params["members"]`` (default 5) members."""
    if arch != "small_cnn":
        raise KeyError(f"the packed ensemble implements 'small_cnn' only, not {arch!r}")
    return PackedEnsemble(**method_params, **arch_params)
