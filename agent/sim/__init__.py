"""Deterministic simulation for the sans-IO protocol cores: a virtual clock and a lossy network."""
