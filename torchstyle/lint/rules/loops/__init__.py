"""TS3xx: Training and evaluation loops, data loading."""
