"""Where everything sits in a container tree: the ``/opt/ml`` layout, under any root.

One definition for both readers of the layout: ``toolkit_env`` (the paths the toolkit puts
in ``SM_*``) and ``prepare_container_tree`` (the folders it creates), so that the two can
never disagree on where, say, the model goes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ContainerLayout", "ToolkitPaths"]

# Each folder as parts under the base dir: ToolkitPaths joins them as strings, the way the
# toolkit does, ContainerLayout as Paths for the files it makes.
_CODE = ("code",)
_MODEL = ("model",)
_INPUT = ("input",)
_INPUT_CONFIG = (*_INPUT, "config")
_INPUT_DATA = (*_INPUT, "data")
_OUTPUT = ("output",)
_OUTPUT_DATA = (*_OUTPUT, "data")
_OUTPUT_INTERMEDIATE = (*_OUTPUT, "intermediate")


@dataclass(frozen=True)
class ToolkitPaths:
    """The folder strings environment.py computes from ``base_dir``, character for character.

    The toolkit uses os.path.join on SAGEMAKER_BASE_DIR as given, so ``./rel`` stays
    ``./rel/model`` and ``/a//b`` keeps its double slash; a Path would normalise both, and
    SM_* would then differ from what the script sees on SageMaker.
    """

    base_dir: str

    @classmethod
    def under(cls, base_dir: str | os.PathLike[str]) -> ToolkitPaths:
        return cls(os.fspath(base_dir))

    def _join(self, parts: tuple[str, ...]) -> str:
        # One join per level, as environment.py chains them (input_dir, then "config").
        path = self.base_dir
        for part in parts:
            path = os.path.join(path, part)
        return path

    @property
    def code_dir(self) -> str:
        return self._join(_CODE)

    @property
    def model_dir(self) -> str:
        return self._join(_MODEL)

    @property
    def input_dir(self) -> str:
        return self._join(_INPUT)

    @property
    def input_config_dir(self) -> str:
        return self._join(_INPUT_CONFIG)

    @property
    def output_dir(self) -> str:
        return self._join(_OUTPUT)

    @property
    def output_data_dir(self) -> str:
        return self._join(_OUTPUT_DATA)

    @property
    def output_intermediate_dir(self) -> str:
        return self._join(_OUTPUT_INTERMEDIATE)

    def channel_dir(self, channel: str) -> str:
        return self._join((*_INPUT_DATA, channel))


@dataclass(frozen=True)
class ContainerLayout:
    """The /opt/ml tree under ``root`` (environment.py's ``base_dir``)."""

    root: Path

    @property
    def toolkit_paths(self) -> ToolkitPaths:
        """The same folders as the toolkit spells them, for a base dir of ``str(root)``."""
        return ToolkitPaths.under(self.root)

    @property
    def code_dir(self) -> Path:
        return self.root.joinpath(*_CODE)

    @property
    def model_dir(self) -> Path:
        return self.root.joinpath(*_MODEL)

    @property
    def input_dir(self) -> Path:
        return self.root.joinpath(*_INPUT)

    @property
    def input_config_dir(self) -> Path:
        return self.root.joinpath(*_INPUT_CONFIG)

    @property
    def input_data_dir(self) -> Path:
        return self.root.joinpath(*_INPUT_DATA)

    @property
    def output_dir(self) -> Path:
        return self.root.joinpath(*_OUTPUT)

    @property
    def output_data_dir(self) -> Path:
        return self.root.joinpath(*_OUTPUT_DATA)

    @property
    def output_intermediate_dir(self) -> Path:
        return self.root.joinpath(*_OUTPUT_INTERMEDIATE)

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
