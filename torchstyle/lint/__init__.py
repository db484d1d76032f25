"""``torchstyle lint``: the style guide's don'ts, found in anyone's PyTorch code."""
