"""Sparse-training methods and what they share: the method interface (base), weight masks,
hard-concrete gates, channel surgery, accounting and latency. The methods themselves are in
``pruning/methods/``, one small class each; ``pruning.registry.METHODS`` finds them by name."""
