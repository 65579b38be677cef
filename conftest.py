# Repo-level hooks for this repository's own experiments. The sm_pytest plugin itself is
# registered through its pytest11 entry point (pyproject.toml); do not register it here.
