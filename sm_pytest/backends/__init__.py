"""Backends run a RunSpec somewhere and give back a RunResult: the Backend protocol
(base.py), this machine (local.py), SageMaker (sagemaker.py, wired by sagemaker_session.py),
which of them a session uses (choose.py, the one place that decides), and the runner that
drives any of them (runner.py).

runner.py sits here, not in run/, because it drives a Backend (submit, wait, save the result):
run/ holds only what one run needs on this machine and knows no backend."""
