"""A training script that only reports what it was given (the conformance probe).

It writes <SM_MODEL_DIR>/probe.json with its argv, working directory, whole environment and
the listing of every channel directory. PROBE_FAILURE_TEXT makes it write its own
output/failure file first; PROBE_EXIT_CODE is the code it exits with.
"""

import json
import os
import sys

channels = json.loads(os.environ.get("SM_CHANNELS", "[]"))
report = {
    "argv": sys.argv,
    "cwd": os.getcwd(),
    "env": dict(os.environ),
    "channel_files": {
        name: sorted(os.listdir(os.environ["SM_CHANNEL_" + name.upper()])) for name in channels
    },
}
with open(os.path.join(os.environ["SM_MODEL_DIR"], "probe.json"), "w", encoding="utf-8") as f:
    json.dump(report, f, ensure_ascii=False, indent=1, sort_keys=True)

if os.environ.get("PROBE_FAILURE_TEXT"):
    with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
        f.write(os.environ["PROBE_FAILURE_TEXT"])
sys.exit(int(os.environ.get("PROBE_EXIT_CODE", "0")))
