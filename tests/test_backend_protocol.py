"""sm_pytest/backends/base.py: the one interface every backend implements, held to by the
local and the SageMaker backend."""

from __future__ import annotations

import inspect

import pytest

from sm_pytest.backends.base import Backend
from sm_pytest.backends.local import LocalBackend

METHODS = ("submit", "wait", "stop")


def _parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_protocol_is_submit_wait_stop_and_a_name():
    assert "name" in Backend.__annotations__
    assert {m: _parameters(getattr(Backend, m)) for m in METHODS} == {
        "submit": ["self", "run", "attempt_dir"], "wait": ["self", "handle"],
        "stop": ["self", "handle"]}


@pytest.mark.parametrize("backend", ["local", "sagemaker"])
def test_each_backend_has_the_protocols_methods(backend):
    if backend == "local":
        cls = LocalBackend
    else:
        pytest.importorskip("boto3")
        from sm_pytest.backends.sagemaker import SageMakerBackend as cls
    for method in METHODS:
        assert _parameters(getattr(cls, method))[:len(_parameters(getattr(Backend, method)))] \
            == _parameters(getattr(Backend, method)), (cls.__name__, method)


def test_the_local_backend_names_itself():
    assert LocalBackend.name == "local"
