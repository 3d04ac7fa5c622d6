"""Optimizers: xRDA with (reweighted, optionally grouped) l1 for sparse training."""

from optim.rda import RDA

__all__ = ["RDA"]
