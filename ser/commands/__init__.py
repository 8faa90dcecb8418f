"""One module per CLI command group. Command bodies import the heavy modules they need lazily."""
