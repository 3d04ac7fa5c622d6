"""Which channels of a network can be gated or removed, declared once by the architectures.

A *channel site* is a BatchNorm2d whose output channels a method may gate (L0 gates) or
remove physically (network slimming, the export of gate methods), together with the layers
around it: the Conv2d producing the channels and the Conv2d/Linear layers reading them.
Every module class of ``models/`` that has such sites declares them with a method
``channel_sites()`` returning sites named relative to itself; ``channel_sites(model)`` walks a
model and collects them all, with qualified names, in module order (forward order for the
architectures here). Surgery, slimming and the gate methods read this one declaration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn


@dataclass(frozen=True)
class ChannelSite:
    """A BatchNorm2d whose channels can be gated or removed, and its neighbours (module names)."""

    bn: str
    producer: str | None  # Conv2d whose output channels are the BN's; None: the BN reads a
    # concatenation that later layers read too (DenseNet), and selects its channels from it
    consumers: tuple[str, ...]  # Conv2d / Linear layers reading the (activated) BN output directly
    removable: bool = True  # False: the channels feed a residual stream, which keeps its width
    gated: bool = True  # L0 gates go here


def _prefixed(site: ChannelSite, prefix: str) -> ChannelSite:
    def q(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    return replace(
        site,
        bn=q(site.bn),
        producer=q(site.producer) if site.producer else None,
        consumers=tuple(q(c) for c in site.consumers),
    )


def channel_sites(model: nn.Module) -> list[ChannelSite]:
    """Every site declared by ``model`` and its submodules, qualified, ordered as the BNs are in
    ``model.named_modules()``."""
    sites = [
        _prefixed(site, prefix)
        for prefix, module in model.named_modules()
        if callable(getattr(module, "channel_sites", None))
        for site in module.channel_sites()
    ]
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return sorted(sites, key=lambda s: order[s.bn])
