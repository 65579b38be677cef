"""Print the SageMaker training toolkit's variables for one tree, without running a program.

Usage: SAGEMAKER_BASE_DIR=<base, spelled as under test> python toolkit_env.py

Prints, as JSON, what environment.Environment().to_env_vars() gives plus the variables
Environment.__init__ exports (what toolkit_env mirrors). The base dir is read at import, as
given: the conformance test uses it to check that odd spellings (``./rel``, ``/a//b``) come
out exactly as the toolkit writes them. Host probes are pinned as in run_toolkit.py.
"""

import json
import os
import sys

if "SAGEMAKER_BASE_DIR" not in os.environ:
    sys.exit("toolkit_env.py: set SAGEMAKER_BASE_DIR to the tree to read")

from sagemaker_training import environment  # noqa: E402

environment.num_cpus = lambda: 97
environment.num_gpus = lambda: 98
environment.num_neurons = lambda instance_type: 99
environment.validate_smddprun = lambda: False
environment.validate_smddpmprun = lambda: False

before = dict(os.environ)
env = environment.Environment()
exported = {k: v for k, v in os.environ.items() if before.get(k) != v}
print(json.dumps({**env.to_env_vars(), **exported}, sort_keys=True))
