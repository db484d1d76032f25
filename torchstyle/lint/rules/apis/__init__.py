"""TS5xx: Deprecated and unsafe APIs."""
