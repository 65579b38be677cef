"""What one run needs on this machine: the artifacts tree, the training-container contract,
safe tar extraction, process groups, signals, live progress, folder hashing and the
fingerprint."""
