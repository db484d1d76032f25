"""TS2xx: Autograd: tensors, losses and the graph."""
