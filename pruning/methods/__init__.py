"""The methods, one module each; ``pruning.registry`` imports them all (a new file is a new method)."""
