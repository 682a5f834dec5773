"""Case creation by message: the POST /cases policy, the creation logic, its outputs and its agent."""
