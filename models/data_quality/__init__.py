"""Data quality per feature and window: invalid, missing, out of range, absent, unexpected."""
