"""Model quality from delayed labels: the label join rules and per-window performance."""
