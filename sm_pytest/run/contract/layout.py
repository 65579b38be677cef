"""Where everything sits in a container tree: the ``/opt/ml`` layout, under any root.

One definition for both readers of the layout: ``toolkit_env`` (the paths the toolkit puts
in ``SM_*``) and ``prepare_container_tree`` (the folders it creates), so that the two can
never disagree on where, say, the model goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ContainerLayout"]


@dataclass(frozen=True)
class ContainerLayout:
    """The /opt/ml tree under ``root`` (environment.py's ``base_dir``)."""

    root: Path

    @property
    def code_dir(self) -> Path:
        return self.root / "code"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def input_config_dir(self) -> Path:
        return self.input_dir / "config"

    @property
    def input_data_dir(self) -> Path:
        return self.input_dir / "data"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def output_intermediate_dir(self) -> Path:
        return self.output_dir / "intermediate"

    @property
    def checkpoint_dir(self) -> Path:
        # /opt/ml/checkpoints: outside the toolkit's layout, where CheckpointConfig syncs.
        return self.root / "checkpoints"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def success_file(self) -> Path:
        return self.output_dir / "success"

    @property
    def hyperparameters_file(self) -> Path:
        return self.input_config_dir / "hyperparameters.json"

    @property
    def resource_config_file(self) -> Path:
        return self.input_config_dir / "resourceconfig.json"

    @property
    def input_data_config_file(self) -> Path:
        return self.input_config_dir / "inputdataconfig.json"

    def channel_dir(self, channel: str) -> Path:
        return self.input_data_dir / channel

    @property
    def top_level(self) -> tuple[Path, ...]:
        """The entries made directly under ``root``: a root holding any of them is taken."""
        return (self.input_dir, self.model_dir, self.output_dir, self.code_dir,
                self.checkpoint_dir)

    @property
    def empty_dirs(self) -> tuple[Path, ...]:
        """The folders a fresh tree starts with (the code dir is the source snapshot, the
        channel dirs are the data)."""
        return (self.model_dir, self.input_config_dir, self.input_data_dir,
                self.output_data_dir, self.output_intermediate_dir, self.checkpoint_dir)
