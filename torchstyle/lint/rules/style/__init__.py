"""TS6xx: Style: naming and file layout."""
