"""One small, reversible revision per schema change."""
