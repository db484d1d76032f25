"""TS1xx: Modules: defining and calling nn.Module."""
