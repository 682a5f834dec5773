"""Reconciliation: compare our case state with Offload's ``GET /cases/{id}`` and fill what webhooks missed."""
