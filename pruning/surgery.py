"""Physical channel removal ("surgery") and the smaller model's size.

The channels that can be removed are the *removable channel sites* the architectures declare
(``models.topology``): a BatchNorm2d whose channels are sliced together with its producing
Conv2d's output channels, its own parameters and running statistics, and its consumers' input
channels. VGG: every BN of ``features``. ResNets: only the BNs inside a block (BasicBlock ``bn1``;
Bottleneck ``bn1`` and ``bn2``); the BNs writing into the residual stream keep their width, since
every block reads and adds to that stream. DenseNet: every BN; they have no single producer: a BN
reads the concatenation of all earlier outputs, which later layers read too, so the concatenation
keeps its width. As in Liu et al.'s channel selection, the shrunk BN (``SelectBatchNorm2d``) picks
its kept channels from its input, and only the BN and its consumer's input channels are sliced.

Exactness contract: if every removed channel's BN output is exactly zero (BN weight and
bias both 0, see ``zero_channels``), the shrunk model computes the same function as the
original in eval mode. A zero BN output stays zero through ReLU and max-pooling (and the
zero padding of the next conv), so the consumers' removed input channels contributed
exactly nothing; the kept channels see the same weights and running statistics. Without
zeroing, ``shrink`` still removes the channels; the outputs then differ by whatever the
removed channels contributed.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from models.topology import ChannelSite, channel_sites
from pruning.accounting import layer_flops


class SelectBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d over the channels ``index`` of its input (the shrunk pre-activation BN of a DenseNet)."""

    def __init__(self, index: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        super().__init__(index.numel(), *args, **kwargs)
        self.register_buffer("index", index.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.index_select(1, self.index))


def removable_sites(model: nn.Module) -> dict[str, ChannelSite]:
    """BN name -> its channel site, for every site whose channels ``shrink`` can remove."""
    sites = {site.bn: site for site in channel_sites(model) if site.removable}
    if not sites:
        raise ValueError(
            f"channel surgery does not support {type(model).__name__}: "
            "it declares no removable channels (models.topology)"
        )
    return sites


def prunable_bns(model: nn.Module) -> list[str]:
    """Qualified names of the BatchNorm2d modules whose channels ``shrink`` can remove, in model order."""
    return list(removable_sites(model))


def _check_keep(model: nn.Module, keep: dict[str, torch.Tensor], sites: dict[str, ChannelSite]) -> None:
    for name, mask in keep.items():
        if name not in sites:
            raise ValueError(f"{name!r} is not a prunable BatchNorm2d of this model; prunable: {', '.join(sites)}")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise ValueError(f"keep[{name!r}] must be a boolean tensor")
        channels = model.get_submodule(name).num_features
        if mask.dim() != 1 or mask.numel() != channels:
            raise ValueError(f"keep[{name!r}] has shape {tuple(mask.shape)}, expected ({channels},)")
        if not bool(mask.any()):
            raise ValueError(f"keep[{name!r}] keeps no channel: a layer cannot be left with zero channels")


def zero_channels(model: nn.Module, keep: dict[str, torch.Tensor]) -> None:
    """Set BN weight and bias of every removed channel to 0, in place (a masked model)."""
    _check_keep(model, keep, removable_sites(model))
    with torch.no_grad():
        for name, mask in keep.items():
            bn = model.get_submodule(name)
            removed = ~mask.to(bn.weight.device)
            bn.weight[removed] = 0
            bn.bias[removed] = 0


def _sliced_conv(conv: nn.Conv2d, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Conv2d:
    if conv.groups != 1:
        raise ValueError("channel surgery supports only ungrouped convolutions")
    weight = conv.weight.detach()
    if out_idx is not None:
        weight = weight.index_select(0, out_idx.to(weight.device))
    if in_idx is not None:
        weight = weight.index_select(1, in_idx.to(weight.device))
    new = nn.Conv2d(
        weight.shape[1],
        weight.shape[0],
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        1,
        conv.bias is not None,
        conv.padding_mode,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(weight)
        if conv.bias is not None:
            bias = conv.bias.detach()
            new.bias.copy_(bias if out_idx is None else bias.index_select(0, out_idx.to(bias.device)))
    return new


def _sliced_linear(linear: nn.Linear, in_idx: torch.Tensor) -> nn.Linear:
    weight = linear.weight.detach().index_select(1, in_idx.to(linear.weight.device))
    new = nn.Linear(weight.shape[1], weight.shape[0], linear.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach())
    return new


def _sliced_bn(bn: nn.BatchNorm2d, idx: torch.Tensor, select: bool) -> nn.BatchNorm2d:
    """The BN's channels ``idx``; with ``select`` a SelectBatchNorm2d that also picks them from its input."""
    ref = bn.weight if bn.affine else bn.running_mean
    idx = idx.to(ref.device)
    if isinstance(bn, SelectBatchNorm2d):  # shrinking again: index into the original input
        select, index = True, bn.index.index_select(0, idx)
    else:
        index = idx
    args = (bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    new = (
        SelectBatchNorm2d(index, *args, device=ref.device, dtype=ref.dtype)
        if select
        else nn.BatchNorm2d(idx.numel(), *args, device=ref.device, dtype=ref.dtype)
    )
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight.detach().index_select(0, idx))
            new.bias.copy_(bn.bias.detach().index_select(0, idx))
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean.index_select(0, idx))
            new.running_var.copy_(bn.running_var.index_select(0, idx))
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def _replace(model: nn.Module, name: str, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` where ``name`` is, keeping the old module's training flag and requires_grad."""
    new.train(old.training)
    for (_, p_old), (_, p_new) in zip(old.named_parameters(), new.named_parameters()):
        p_new.requires_grad_(p_old.requires_grad)
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def shrink(model: nn.Module, keep: dict[str, torch.Tensor]) -> nn.Module:
    """A physically smaller deep copy of ``model`` keeping only the channels in ``keep``.

    ``keep`` maps names from ``prunable_bns(model)`` to boolean masks over that BN's
    channels (True = keep). For each entry, the producing conv's output channels (and
    bias), the BN's weight, bias and running statistics, and the consumers' input
    channels are sliced; the modules are replaced by new ones of the smaller size under
    the same names. ``model`` itself is not modified. See the module docstring for when
    the outputs are exactly preserved.
    """
    sites = removable_sites(model)
    _check_keep(model, keep, sites)
    out_idx: dict[str, torch.Tensor] = {}
    in_idx: dict[str, torch.Tensor] = {}
    bn_idx: dict[str, torch.Tensor] = {}
    for name, mask in keep.items():
        idx = mask.nonzero().flatten()
        bn_idx[name] = idx
        if sites[name].producer is not None:
            out_idx[sites[name].producer] = idx
        for consumer in sites[name].consumers:
            in_idx[consumer] = idx
    new_model = copy.deepcopy(model)
    for name in dict.fromkeys([*out_idx, *in_idx]):  # each layer once, in a fixed order
        layer = new_model.get_submodule(name)
        if isinstance(layer, nn.Conv2d):
            sliced: nn.Module = _sliced_conv(layer, out_idx.get(name), in_idx.get(name))
        elif isinstance(layer, nn.Linear):
            sliced = _sliced_linear(layer, in_idx[name])
        else:
            raise ValueError(f"cannot slice {name!r} of type {type(layer).__name__}")
        _replace(new_model, name, layer, sliced)
    for name, idx in bn_idx.items():
        bn = new_model.get_submodule(name)
        _replace(new_model, name, bn, _sliced_bn(bn, idx, select=sites[name].producer is None))
    return new_model


def physical_report(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Size of the model as it physically is, zeros included.

    ``params_physical``: every parameter element. ``flops_physical``: 2 x multiply-adds
    of every Conv2d and Linear weight (zero or not) for one image of ``input_shape``
    (C, H, W), i.e. the dense FLOPs of ``pruning.accounting.layer_flops``.
    """
    flops = layer_flops(model, input_shape)
    return {
        "params_physical": sum(p.numel() for p in model.parameters()),
        "flops_physical": sum(dense for dense, _ in flops.values()),
    }
