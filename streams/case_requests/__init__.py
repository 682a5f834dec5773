"""Case creation by message: the POST /cases policy, the request table's storage."""
