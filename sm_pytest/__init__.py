"""sm-pytest: training experiments as pytest tests, locally or on Amazon SageMaker."""

__version__ = "0.1.0"
