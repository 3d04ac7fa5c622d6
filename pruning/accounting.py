"""Sparsity, parameter and FLOP accounting, one documented convention for every method.

- Prunable weights are the ``weight`` tensors of Conv2d and Linear layers.
- Sparsity is measured against the *dense architecture*: 1 - nonzero prunable weights of
  the final model / prunable weights of the freshly built dense model. Channels removed
  physically therefore count as zeros. ``sparsity_all`` does the same over all parameters.
- Zeros are exact: a weight counts as nonzero unless it is exactly 0.
- FLOPs are 2 x multiply-adds of Conv2d and Linear layers for one input image (BN,
  activations, pooling and additions are not counted). ``flops_dense`` is the dense
  architecture's; ``flops_effective`` counts only the multiply-adds with a nonzero weight,
  on the final (possibly physically smaller) model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import nn

LayerScope = Literal["conv_linear", "conv"]
_KINDS: dict[str, tuple[type[nn.Module], ...]] = {"conv_linear": (nn.Conv2d, nn.Linear), "conv": (nn.Conv2d,)}


def prunable_layers(
    model: nn.Module, scope: LayerScope = "conv_linear", exclude: Iterable[str] = ()
) -> dict[str, nn.Module]:
    """The layers whose ``weight`` is prunable, by qualified name, in module order: every Conv2d and
    Linear (``scope="conv"``: Conv2d only, as Liu et al. prune), except the modules named in
    ``exclude`` (e.g. a classifier left dense); naming a module the model lacks is an error."""
    skip = set(exclude)
    unknown = skip - {name for name, _ in model.named_modules()}
    if unknown:
        raise ValueError(f"exclude: no module named {sorted(unknown)[0]!r} in the model")
    return {name: m for name, m in model.named_modules() if isinstance(m, _KINDS[scope]) and name not in skip}


def prunable_weights(
    model: nn.Module, scope: LayerScope = "conv_linear", exclude: Iterable[str] = ()
) -> dict[str, nn.Parameter]:
    """The same layers' weights, keyed by parameter name (``"layers.0.conv1.weight"``)."""
    return {f"{name}.weight": m.weight for name, m in prunable_layers(model, scope, exclude).items()}


def _spatial_positions(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Output positions per prunable layer (H x W for a conv, 1 for a linear) for one image."""
    positions: dict[str, int] = {}
    hooks = []
    for name, m in prunable_layers(model).items():

        def hook(mod: nn.Module, inputs: Any, out: torch.Tensor, name: str = name) -> None:
            positions[name] = out[0].numel() // out.shape[1] if out.dim() == 4 else 1

        hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return positions


def layer_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, int]]:
    """Per prunable layer: (dense FLOPs, FLOPs with zero weights skipped) for one image."""
    positions = _spatial_positions(model, input_shape)
    result = {}
    for name, m in prunable_layers(model).items():
        n = positions.get(name, 0)  # a layer never reached costs nothing
        result[name] = (2 * m.weight.numel() * n, 2 * int(torch.count_nonzero(m.weight)) * n)
    return result


def sparsity_report(final: nn.Module, dense: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Sparsity, parameter and FLOP figures of ``final`` against the ``dense`` architecture."""
    dense_layers = prunable_layers(dense)
    final_layers = prunable_layers(final)
    dense_flops = layer_flops(dense, input_shape)
    final_flops = layer_flops(final, input_shape)
    table = []
    for name, m in dense_layers.items():
        kept = final_layers.get(name)
        nonzero = int(torch.count_nonzero(kept.weight)) if kept is not None else 0
        table.append(
            {
                "layer": name,
                "type": type(m).__name__,
                "shape": list(m.weight.shape),
                "shape_final": list(kept.weight.shape) if kept is not None else None,
                "weights": m.weight.numel(),
                "nonzero": nonzero,
                "density": nonzero / m.weight.numel(),
                "flops_dense": dense_flops[name][0],
                "flops_effective": final_flops[name][1] if kept is not None else 0,
            }
        )
    prunable_dense = sum(r["weights"] for r in table)
    prunable_nonzero = sum(int(torch.count_nonzero(m.weight)) for m in final_layers.values())
    params_dense = sum(p.numel() for p in dense.parameters())
    params_total = sum(p.numel() for p in final.parameters())
    params_nonzero = sum(int(torch.count_nonzero(p)) for p in final.parameters())
    return {
        "sparsity": 1.0 - prunable_nonzero / prunable_dense,
        "sparsity_all": 1.0 - params_nonzero / params_dense,
        "prunable_weights_dense": prunable_dense,
        "prunable_weights_nonzero": prunable_nonzero,
        "params_dense": params_dense,
        "params_total": params_total,
        "params_nonzero": params_nonzero,
        "flops_dense": sum(v[0] for v in dense_flops.values()),
        "flops_effective": sum(v[1] for v in final_flops.values()),
        "layers": table,
    }


def weight_sparsity(model: nn.Module) -> torch.Tensor:
    """Fraction of exact zeros over the prunable weights, as a 0-d tensor (no host sync)."""
    layers = prunable_layers(model).values()
    zeros = sum((m.weight == 0).sum() for m in layers)
    total = sum(m.weight.numel() for m in layers)
    return zeros / total
