"""Business outcomes per version: a window against its baseline, a challenger against the
champion."""
