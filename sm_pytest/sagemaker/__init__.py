"""The SageMaker path (--sm): settings, requests, uploads, experiments, the emulator."""
