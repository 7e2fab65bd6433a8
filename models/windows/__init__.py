"""Event-time windows of feature distributions and the mergeable accumulators in them."""
