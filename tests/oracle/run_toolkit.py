"""Run the SageMaker training toolkit (sagemaker-training) on one tree, as the container would.

Usage: SAGEMAKER_BASE_DIR=<tree> python run_toolkit.py

The toolkit reads SAGEMAKER_BASE_DIR once, at import, so each tree needs its own process.
Host probes are pinned first, so that results do not depend on the machine and nothing slow
runs: num_cpus/num_gpus/num_neurons, the `which smddprun`/`smddpmprun` checks, and the DNS
wait for "algo-1" (it retries for up to 15 minutes). The pinned counts are sentinels; the
conformance test masks them. trainer.train() then runs the program and exits (0 on success,
1 on failure), writing output/success or output/failure.
"""

import os
import sys

if "SAGEMAKER_BASE_DIR" not in os.environ:
    sys.exit("run_toolkit.py: set SAGEMAKER_BASE_DIR to the tree to run")

from sagemaker_training import entry_point, environment, trainer  # noqa: E402

environment.num_cpus = lambda: 97
environment.num_gpus = lambda: 98
environment.num_neurons = lambda instance_type: 99
environment.validate_smddprun = lambda: False
environment.validate_smddpmprun = lambda: False
entry_point._wait_hostname_resolution = lambda: None

trainer.train()
