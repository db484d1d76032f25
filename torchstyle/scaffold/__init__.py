"""``torchstyle new``: start a project in the guide's file layout."""
