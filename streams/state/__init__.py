"""The case-state fold (pure functions over the models in ``schemas``) and its table storage."""
