"""Judging a run: threshold checks, stored baselines and the regression gate."""
