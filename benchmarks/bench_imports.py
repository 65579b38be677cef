"""Import weight: what `import sm_pytest.plugin` costs and which heavy modules it pulls in.

The plugin must not import sagemaker, boto3, botocore or torch, and pandas only when the
summary is built.

    python benchmarks/bench_imports.py
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sagemaker", "boto3", "botocore", "torch", "pandas", "numpy", "moto")
PROBE = """
import json, sys, time
before = set(sys.modules)
started = time.perf_counter()
import MODULE
elapsed = time.perf_counter() - started
seen = sorted({m.split(".")[0] for m in set(sys.modules) - before} & set(HEAVY))
print(json.dumps({"seconds": elapsed, "heavy": seen}))
"""


def measure(module: str, repeats: int = 5) -> tuple[float, list[str]]:
    times, heavy = [], []
    for _ in range(repeats):
        probe = PROBE.replace("MODULE", module).replace("HEAVY", repr(HEAVY))
        out = subprocess.run([sys.executable, "-c", probe],
                             capture_output=True, text=True, check=True).stdout
        data = json.loads(out)
        times.append(data["seconds"])
        heavy = data["heavy"]
    return sorted(times)[len(times) // 2], heavy


def main() -> None:
    for module in ("pytest", "sm_pytest.plugin", "sm_pytest.report.summary", "pandas"):
        seconds, heavy = measure(module)
        print(f"import {module:<20} {seconds * 1000:7.1f} ms   heavy modules: "
              f"{', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
