"""The case-state fold (pure functions over the models in ``schemas``), its agent and its query API."""
