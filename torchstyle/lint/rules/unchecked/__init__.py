"""TS0xx: Files torchstyle could not check."""
