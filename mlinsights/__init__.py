"""ML insights (SPEC §8): features, training, scoring and the insights the ML tab shows."""
