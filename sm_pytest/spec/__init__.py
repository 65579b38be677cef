"""Experiment files: YAML with line marks, the schema, matrix/zip expansion, thresholds,
tolerances and metric definitions."""
