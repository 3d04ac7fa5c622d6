"""Hard-concrete channel gates and the L0 penalty (Louizos, Welling & Kingma, ICLR 2018), shared by
the gate methods (``pruning/methods/l0hc.py``: a free log alpha per channel; ``dep_l0.py``: generated).

**Gate.** One gate per output channel, multiplying the output of the BatchNorm2d that follows
a convolution. With beta = 2/3, gamma = -0.1, zeta = 1.1 and u ~ U(eps, 1 - eps):

    s = sigmoid((log u - log(1 - u) + log alpha) / beta),   z = clamp(s (zeta - gamma) + gamma, 0, 1)

Training draws one gate per example and channel; evaluation (and the frozen fine-tuning
stage) uses the deterministic gate z = clamp(sigmoid(log alpha) (zeta - gamma) + gamma, 0, 1),
which is exactly 0 for log alpha <= log(-gamma / zeta) = -2.398. The probability that a
sampled gate is nonzero is P(z != 0) = sigmoid(log alpha - beta log(-gamma / zeta)).
Gating after BN is also gating after its ReLU (z >= 0), so it matches the reference code.

**Placement** (``gate_placement``): the gated channel sites the architectures declare
(``models.topology``). VGG: the BN of every convolution. CIFAR ResNets and ResNet-18: the stem BN
and ``bn1`` of every block. ResNet-50: the stem BN, ``bn1`` and ``bn2`` of every bottleneck. The
BNs that write into the residual stream keep their width. The stem gate is the exception: it is
learned, but since the stem feeds the residual stream its closed channels cannot be removed
physically; the export sets them to exact zeros instead (the stem
convolution's filters and the input columns of the layers reading the stem output directly),
so they count as zeros in the sparsity, not as a smaller model.

**Penalty** (``lam`` times an expected size, ``penalty`` in the config). With E_l = sum over the
gates of layer l of P(z != 0) (clamped to [1e-6, 1 - 1e-6], as the release does) and k_l the
kernel area of its convolution:

- ``release`` (the Dep-L0 release, used by the paper configs): what each of its models computes.
  VGG-16 and the CIFAR ResNets chain the gated layers in forward order, sum over l of
  k_l E_{l-1} E_l with E_0 = the network's input width (3): on VGG, whose gated layers follow one
  another, that is the expected number of conv weights; on ResNet-56 a block's conv1 is charged
  for the previous block's conv1 gates, although it reads the residual stream (so closing a
  block's gates is pressed about twice as hard as its weights alone would say). ResNet-50
  (bottlenecks) sums k_l^2 C_in,l E_l over its gated layers, with the full input width C_in and
  the kernel area counted twice (dep-l0 ``models/resnet50/l0_layers.py``).
- ``params`` (this repository's correction): the expected number of weights of the gated
  convolutions, sum over l of k_l E[C_in,l] E_l, where E[C_in,l] is E of the gated layer whose
  output the convolution reads, or its fixed input width where it reads an ungated tensor (a
  block's first convolution reads the residual stream). It equals ``release`` on VGG; it charges
  each channel for the weights it carries on ResNets. Layers that read gated channels but have
  no gates themselves (a block's conv2 or conv3, the VGG classifier) are not in the sum, as in
  the release.
- ``gates`` (the textbook expected L0 norm of the gates): sum of P(z != 0) over every gate.
  Each channel costs the same whatever its size, so ``lam`` is on a different scale (about
  the cost per channel rather than per weight).

**Optimisation.** Weights use the experiment's optimizer; gate parameters (the log alphas of
``l0hc``, the generator of ``dep_l0``) have an Adam of their own (``gate_lr``, no weight decay),
on the weights' learning-rate schedule unless ``gate_schedule`` gives one (the release's VGG
script never decays the gates; its ResNet-50 script decays them x0.2 where the weights go x0.1).
An optional last stage (``finetune_epochs``, ``finetune_lr``, ``finetune_schedule``) trains the
weights with the gates frozen at their deterministic values and no penalty.

**Export.** The deterministic gates are folded into the BN affine parameters
(z * BN(x) = BN'(x) with weight and bias scaled by z), then the channels whose gate is 0 are
removed with ``pruning.surgery.shrink`` (exact, since their BN weight and bias are now 0). If
every gate of a removable layer is closed, the layer's output is exactly zero: the channel with
the largest log alpha is kept physically (with zero BN weight and bias, so outputs are
unchanged), since a layer cannot have zero channels. The exported model has no gates and no
hooks and computes, in eval mode, what the gated model computed. Its latency is measured against
the unshrunk model (``pruning.latency.pruned_vs_dense``) at ``latency_batch_sizes``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from models.resnet import Bottleneck
from models.topology import ChannelSite, channel_sites
from pruning.accounting import prunable_layers
from pruning.base import (
    ExtraOptimizer,
    Method,
    MethodConfig,
    RunContext,
    Schedule,
    Stage,
    epochs_field,
    lam_point,
    option,
)
from pruning.latency import pruned_vs_dense
from pruning.surgery import physical_report, shrink

BETA = 2.0 / 3.0  # temperature
GAMMA = -0.1  # stretch interval (gamma, zeta)
ZETA = 1.1
EPS = 1e-6  # u ~ U(eps, 1 - eps)
CLOSED_BELOW = math.log(-GAMMA / ZETA)  # deterministic gate is 0 for log alpha <= this (-2.398)
GATES = "l0_gates"  # attribute of the model holding the gate parameters (in its state_dict)


# ---------------------------------------------------------------- the hard-concrete gate


def prob_nonzero(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(z != 0) = sigmoid(log alpha - beta log(-gamma / zeta)), elementwise, clamped to
    [1e-6, 1 - 1e-6] as the release clamps it (no gradient beyond; log alpha outside (-15.4, 12.2))."""
    return torch.sigmoid(log_alpha - BETA * CLOSED_BELOW).clamp(EPS, 1 - EPS)


def deterministic_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    """Test-time gate clamp(sigmoid(log alpha) (zeta - gamma) + gamma, 0, 1), elementwise."""
    return (torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def hard_concrete(pre: torch.Tensor) -> torch.Tensor:
    """z = clamp(sigmoid(pre / beta) (zeta - gamma) + gamma, 0, 1), elementwise, pre = log alpha + noise."""
    return (torch.sigmoid(pre / BETA) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def logistic_noise(widths: list[int], n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """log u - log(1 - u), u ~ U(eps, 1 - eps), flat: one block of n x C (row-major) per width C, in
    order. One draw from the global RNG for all of them, the same uniforms as a draw of (n, C) per
    width in turn (on the CPU the generator fills a tensor serially)."""
    u = torch.rand(n * sum(widths), device=device, dtype=dtype) * (1 - 2 * EPS) + EPS
    return torch.log(u) - torch.log1p(-u)


def sample_gates(log_alpha: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` independent draws of every gate of one layer, shape (n, C), from the global RNG."""
    noise = logistic_noise([log_alpha.numel()], n, log_alpha.device, log_alpha.dtype).view(n, -1)
    return hard_concrete(noise + log_alpha)


def sample_layer_gates(log_alphas: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    """``sample_gates`` of every layer at once, (n, C) per layer: one draw and one pass of each
    elementwise operation over all layers' gates, instead of a handful of small ones per layer (on
    a GPU, each a kernel launch). The numbers are those of ``sample_gates`` called layer by layer
    up to float rounding: the same draws, and each log alpha's gradient the same sum over its n
    rows, but an entry may take the vectorised path of an elementwise function where layer by
    layer it took the scalar one (the last few entries of a tensor), which can differ in the last
    bit."""
    widths = [la.numel() for la in log_alphas]
    noise = logistic_noise(widths, n, log_alphas[0].device, log_alphas[0].dtype)
    rows = torch.cat([la.expand(n, w).reshape(-1) for la, w in zip(log_alphas, widths)])
    z = hard_concrete(noise + rows)
    return [block.view(n, w) for block, w in zip(z.split([n * w for w in widths]), widths)]


def layer_deterministic_gates(log_alphas: list[torch.Tensor]) -> list[torch.Tensor]:
    """``deterministic_gates`` of every layer in one pass."""
    return list(deterministic_gates(torch.cat(log_alphas)).split([la.numel() for la in log_alphas]))


# ---------------------------------------------------------------- placement


def gate_placement(model: nn.Module) -> list[ChannelSite]:
    """The gated channel sites of a model, in forward order (see the module docstring)."""
    sites = [site for site in channel_sites(model) if site.gated]
    if not sites:
        raise ValueError(
            f"L0 channel gates: {type(model).__name__} declares no gated channel sites "
            "(supported: VGG, CIFAR ResNets, ResNet-18/50)"
        )
    return sites


# ---------------------------------------------------------------- gate parameters


class GateParameters(nn.Module):
    """The trainable source of every gated layer's log alphas (one 1-d tensor per layer)."""

    def log_alphas(self) -> list[torch.Tensor]:
        raise NotImplementedError


# ---------------------------------------------------------------- the method


@dataclass
class GateConfig(MethodConfig):
    """Options shared by L0-HC and Dep-L0."""

    lam: float = option(5e-7, ge=0.0)  # penalty coefficient
    penalty: Literal["release", "params", "gates"] = "release"  # see the module docstring
    gate_lr: float = option(1e-3, gt=0.0)  # Adam learning rate of the gate parameters (no weight decay)
    gate_schedule: Schedule | None = None  # None: the weights' schedule
    finetune_epochs: int = epochs_field(0, ge=0)  # last stage: frozen deterministic gates, no penalty
    finetune_lr: float | None = option(None, gt=0.0)  # learning rate of that stage; required with it
    finetune_schedule: Schedule = field(default_factory=lambda: Schedule(name="constant"))
    latency_batch_sizes: list[int] = option(default_factory=lambda: [1, 128], ge=1)  # exported against dense
    latency_warmup: int = option(2, ge=0)
    latency_repeats: int = option(5, ge=1)

    def __post_init__(self) -> None:
        if self.finetune_epochs > 0 and self.finetune_lr is None:
            raise ValueError("finetune_lr: required when finetune_epochs > 0")


class ChannelGates(Method):
    """Hard-concrete channel gates through the one training loop; subclasses pick the gate source.

    ``prepare`` attaches the gate parameters to the model as ``model.l0_gates`` (so they are in
    its state_dict and resume restores them), a forward pre-hook on the model that computes
    the log alphas and every layer's gates once per forward (``sample_layer_gates``), and
    forward hooks on the gated BNs that multiply their outputs by the gates. Module names of the
    model are unchanged.
    """

    Config: type[MethodConfig] = GateConfig

    def __init__(self, cfg: GateConfig) -> None:
        super().__init__(cfg)
        self.cfg: GateConfig = cfg
        self.layers: list[ChannelSite] = []
        self.gates: GateParameters | None = None
        self.frozen = False
        self.reference: nn.Module | None = None  # set by export: the unshrunk model, gates folded in
        self.channels_open: dict[str, int] = {}  # filled by export
        self._handles: list[Any] = []
        self._current: list[torch.Tensor] = []  # log alphas of the forward in progress
        self._gates_now: list[torch.Tensor] = []  # their gates: sampled (n, C) or deterministic (C,) per layer
        self._source: list[int | None] = []  # gated layer read by each gated conv
        self._kernel: list[int] = []  # k^2 of each gated conv
        self._in_width: list[int] = []  # fixed input width of each gated conv
        self._weights: list[tuple[int, int | None, int | None]] = []  # (numel, out gate, in gate) per prunable layer
        self._widths: list[int] = []  # channels of each gated layer

    def make_gates(self, widths: list[int], device: torch.device) -> GateParameters:
        raise NotImplementedError

    def check_budget(self, steps_per_epoch: int, train_epochs: int) -> None:
        late = [m for m in (self.cfg.gate_schedule.milestones if self.cfg.gate_schedule else []) if m >= train_epochs]
        if late:
            raise ValueError(
                f"gate_schedule.milestones: {late[0]} is not inside the train stage's {train_epochs} epochs"
            )

    # ------------------------------------------------ wiring

    @classmethod
    def operating_point(cls, cfg: MethodConfig) -> str:
        return lam_point(cfg.lam)

    def prepare(self, model: nn.Module, ctx: RunContext) -> nn.Module:
        model = super().prepare(model, ctx)
        self.layers = gate_placement(model)
        reads = {r: i for i, layer in enumerate(self.layers) for r in layer.consumers}
        produces = {layer.producer: i for i, layer in enumerate(self.layers)}
        convs = [model.get_submodule(layer.producer) for layer in self.layers]
        self._source = [reads.get(layer.producer) for layer in self.layers]
        self._kernel = [math.prod(c.kernel_size) for c in convs]
        self._in_width = [c.in_channels // c.groups for c in convs]
        # The release's ResNet-50 counts its own way (module docstring); its other models chain.
        self._bottlenecks = any(isinstance(m, Bottleneck) for m in model.modules())
        self._weights = [
            (m.weight.numel(), produces.get(name), reads.get(name)) for name, m in prunable_layers(model).items()
        ]
        self._widths = [model.get_submodule(layer.bn).num_features for layer in self.layers]
        self.gates = self.make_gates(self._widths, next(model.parameters()).device)
        self._attach(model)
        return model

    def _attach(self, model: nn.Module) -> None:
        model.add_module(GATES, self.gates)
        self._handles.append(model.register_forward_pre_hook(self._begin_forward))
        for i, layer in enumerate(self.layers):
            self._handles.append(model.get_submodule(layer.bn).register_forward_hook(self._gate_hook(i)))

    def _detach(self, model: nn.Module) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        delattr(model, GATES)

    def _begin_forward(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            self._current = self.gates.log_alphas()
            # Every layer's gates for this forward at once (the hooks only multiply).
            if module.training and not self.frozen and args and torch.is_tensor(args[0]):
                self._gates_now = sample_layer_gates(self._current, args[0].shape[0])
            else:
                self._gates_now = layer_deterministic_gates(self._current)

    def _gate_hook(self, index: int) -> Any:
        def hook(module: nn.Module, inputs: Any, out: torch.Tensor) -> torch.Tensor:
            z = self._gates_now[index] if self._gates_now else None
            if module.training and not self.frozen:
                if z is None or z.dim() != 2 or z.shape[0] != out.shape[0]:  # a BN run outside the model's forward
                    z = sample_gates(self._current[index], out.shape[0])
                z = z[:, :, None, None]
            else:
                if z is None or z.dim() != 1:
                    z = deterministic_gates(self._current[index])
                z = z[None, :, None, None]
            return out * (z if z.dtype == out.dtype else z.to(out.dtype))  # bf16 activations under autocast

        return hook

    def _set_frozen(self, frozen: bool) -> None:
        self.frozen = frozen
        for p in self.gates.parameters():
            p.requires_grad_(not frozen)

    # ------------------------------------------------ training hooks

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        gate_ids = {id(p) for p in self.gates.parameters()}
        return [{"params": [p for p in model.parameters() if id(p) not in gate_ids and p.requires_grad]}]

    def extra_optimizers(self, model: nn.Module) -> list[ExtraOptimizer]:
        """The gate parameters: Adam at ``gate_lr``, no weight decay (none while frozen)."""
        if self.frozen:
            return []
        return [ExtraOptimizer(list(self.gates.parameters()), "adam", self.cfg.gate_lr, 0.0, self.cfg.gate_schedule)]

    def stages(self, train_epochs: int) -> list[Stage]:
        stages = [Stage("train", train_epochs)]
        if self.cfg.finetune_epochs > 0:
            stages.append(
                Stage(
                    "finetune",
                    self.cfg.finetune_epochs,
                    lr=self.cfg.finetune_lr,
                    schedule=self.cfg.finetune_schedule,
                    penalty=False,
                )
            )
        return stages

    def begin_stage(self, stage: Stage, model: nn.Module) -> nn.Module:
        self._set_frozen(stage.name == "finetune")
        return model

    def expected_size(self, log_alphas: list[torch.Tensor]) -> torch.Tensor:
        """What ``lam`` multiplies: expected gated-conv weights, or the sum of P(z != 0)."""
        probs = prob_nonzero(torch.cat(log_alphas)).split([la.numel() for la in log_alphas])  # one pass
        if self.cfg.penalty == "gates":
            return torch.stack([p.sum() for p in probs]).sum()
        open_ = [p.sum() for p in probs]
        if self.cfg.penalty == "params":
            inputs = [open_[s] if s is not None else w for s, w in zip(self._source, self._in_width)]
        elif self._bottlenecks:  # release, ResNet-50: k^2 (k^2 C_in) E_out with the full input width
            return torch.stack([k * k * w * c for k, w, c in zip(self._kernel, self._in_width, open_)]).sum()
        else:  # release, VGG and CIFAR ResNets: E of the previous gated layer, the input width first
            inputs = [self._in_width[0], *open_[:-1]]
        return torch.stack([k * i * c for k, i, c in zip(self._kernel, inputs, open_)]).sum()

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        if self.cfg.lam == 0:
            return None
        # The log alphas of the forward just run (with their graph): Dep-L0's generator runs once a step.
        log_alphas = self._current if self._current else self.gates.log_alphas()
        return self.cfg.lam * self.expected_size(log_alphas)

    @torch.no_grad()
    def sparsity(self, model: nn.Module) -> torch.Tensor:
        """Fraction of the prunable weights (conv + linear) lying in channels whose deterministic
        gate is 0, as an output channel of a gated conv or an input channel of a layer reading
        gated channels; the same count as the export's, but for the one channel kept in a
        layer whose gates all closed."""
        opened = [(deterministic_gates(la) > 0).sum() / la.numel() for la in self.gates.log_alphas()]
        one = torch.ones((), device=opened[0].device)
        kept = torch.zeros((), device=one.device)
        total = 0
        for numel, out_gate, in_gate in self._weights:
            kept = kept + numel * (opened[out_gate] if out_gate is not None else one) * (
                opened[in_gate] if in_gate is not None else one
            )
            total += numel
        return 1.0 - kept / total

    # ------------------------------------------------ export and records

    @torch.no_grad()
    def export(self, model: nn.Module) -> nn.Module:
        log_alphas = [la.detach() for la in self.gates.log_alphas()]
        self._detach(model)
        try:
            final = copy.deepcopy(model)
        finally:
            self._attach(model)
        keep: dict[str, torch.Tensor] = {}
        self.channels_open = {}
        for layer, la in zip(self.layers, log_alphas):
            z = deterministic_gates(la)
            bn = final.get_submodule(layer.bn)
            bn.weight.mul_(z.to(bn.weight.dtype))
            bn.bias.mul_(z.to(bn.bias.dtype))
            opened = z > 0
            self.channels_open[layer.bn] = int(opened.sum())
            if layer.removable:
                if not bool(opened.any()):  # keep one (zeroed) channel: no layer of width 0
                    opened = torch.zeros_like(opened)
                    opened[la.argmax()] = True
                keep[layer.bn] = opened
            else:  # exact zeros instead of removal: filters of the closed channels, and their readers
                closed = ~opened
                conv = final.get_submodule(layer.producer)
                conv.weight[closed] = 0
                if conv.bias is not None:
                    conv.bias[closed] = 0
                for name in layer.consumers:
                    final.get_submodule(name).weight[:, closed] = 0
        self.reference = final  # the dense architecture, gates folded in: the latency reference
        return shrink(final, keep) if keep else final

    def metrics(self, model: nn.Module) -> dict[str, Any]:
        """Per gated layer: open gates and physical width; the exported model's physical size."""
        out: dict[str, Any] = {
            "gated_layers": [layer.bn for layer in self.layers],
            "channels_dense": dict(zip((layer.bn for layer in self.layers), self._widths)),
            "channels_open": dict(self.channels_open),
            "channels_physical": {layer.bn: model.get_submodule(layer.bn).num_features for layer in self.layers},
        }
        shape = self.ctx.input_shape
        out.update(physical_report(model, shape))
        if self.reference is not None:
            out["latency"] = pruned_vs_dense(
                model,
                self.reference,
                shape,
                self.cfg.latency_batch_sizes,
                self.cfg.latency_warmup,
                self.cfg.latency_repeats,
            )
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"frozen": self.frozen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._set_frozen(bool(state["frozen"]))
