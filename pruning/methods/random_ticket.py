"""The random-pruning control of lottery tickets, as open_lth's ``randomly_prune`` branch does it.

Iterative magnitude pruning runs exactly as in ``lottery`` (the same rounds, masks and rewinding);
only the last round changes: each layer's lottery mask is shuffled over the whole layer (the layer
keeps its number of weights, at uniformly random positions; open_lth's default ``layerwise``
strategy), and the network is retrained from the rewind point with the full schedule. As in
open_lth (``lottery/branch/randomly_prune.py``), the starting weights are the rewind-point weights
as the lottery ticket of that level holds them, i.e. multiplied by the *magnitude* mask, so a weight
that the shuffled mask keeps but magnitude pruning had removed starts at zero
(``kept_weights: masked``); ``kept_weights: rewound`` gives every kept weight its rewind value.

Compare ``random_finetune``: magnitude pruning's densities at random positions of the *trained*
weights, then fine-tuned (a control for magnitude pruning, not for the ticket).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from pruning.base import MethodConfig, Stage, Variant
from pruning.masks import PruneStage, global_magnitude_masks
from pruning.methods.lottery import Lottery, LotteryConfig, permuted


@dataclass
class RandomTicketConfig(LotteryConfig):
    name: str = "random_ticket"
    kept_weights: Literal["masked", "rewound"] = "masked"  # open_lth: the rewound weights times the lottery mask

    def __post_init__(self) -> None:
        if self.reinit:
            raise ValueError("reinit: not for random_ticket (the control re-draws the mask, not the weights)")


class RandomTicket(Lottery):
    name = "random_ticket"
    Config = RandomTicketConfig
    variant_info = Variant("random ticket (open_lth control)", "unstructured", order=65, color="#17becf")
    cfg: RandomTicketConfig

    @classmethod
    def variant(cls, cfg: MethodConfig, optimizer: object) -> Variant:
        return cls.variant_info

    def stages(self, train_epochs: int) -> list[Stage]:
        stages = super().stages(train_epochs)
        stages[-1].name += "_random"
        return stages

    def begin_stage(self, stage: Stage, model: nn.Module) -> nn.Module:
        if not (isinstance(stage, PruneStage) and stage.name.endswith("_random")):
            return super().begin_stage(stage, model)
        weights = self.selected(model)
        ticket = global_magnitude_masks(weights, stage.target, self.current_keep(weights))
        masks = permuted(ticket)  # each layer's mask entries in a random order: the same count per layer
        model.load_state_dict(self.rewind_state())
        if self.cfg.kept_weights == "masked":
            self.masker.set(ticket)  # the ticket's weights: the rewind point times the magnitude mask
        self.masker.set(masks)
        return model
