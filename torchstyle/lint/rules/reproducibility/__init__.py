"""TS4xx: Reproducibility and experiment configuration."""
