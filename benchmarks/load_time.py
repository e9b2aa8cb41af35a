"""CPU time a process spends loading the code location, against loading it with the libraries a step needs.

Every process that loads ``ftassets.definitions`` pays for its imports before it does anything: the code server
of ``dagster dev``, the worker of each run the daemon launches, ``dagster asset materialize``, the ``ftassets``
CLI. The training, inference and metric libraries (torch, transformers, sklearn, torchmetrics, rouge_score and
through it nltk and scipy, sacrebleu) load when a step needs them. The baseline is the same process importing
those libraries as well, which is what loading the definitions cost while the task types imported their metric
libraries at the top (up to 18df972).

    python benchmarks/load_time.py [--rounds 5]

Each load runs in a fresh interpreter (``python -c``), alternating for ``--rounds`` rounds; the median user+system
CPU seconds of each is reported, with ``import dagster`` alone for scale. The last line printed is one JSON object:
``definitions_cpu_s``, ``with_step_libraries_cpu_s``, ``dagster_cpu_s``, ``ratio`` (with the step libraries over
without), the step libraries loading the definitions and the CLI imports (``loaded_with_definitions``), the commit
and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEP_LIBRARIES = (
    "torch", "transformers", "peft", "accelerate", "sklearn", "scipy", "nltk", "torchmetrics", "rouge_score",
    "sacrebleu", "mlflow", "datasets", "llama_cpp", "openai", "azure.ai.ml",
)  # fmt: skip
LOADS = {
    "dagster": "import dagster",
    "definitions": "import ftassets.definitions",
    "with_step_libraries": "import ftassets.definitions, torch, transformers, sklearn.metrics, "
    "torchmetrics.functional.text, rouge_score.rouge_scorer, sacrebleu",
}


def cpu_seconds(code: str) -> float:
    """User+system CPU seconds of a fresh interpreter running ``code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def loaded_with_definitions() -> list[str]:
    """The STEP_LIBRARIES a fresh interpreter has imported after loading the definitions and the CLI (the test
    ``test_definitions.py::test_loading_the_code_location_imports_no_training_or_metric_library`` wants none)."""
    code = (
        "import sys, ftassets.definitions, ftassets.cli; "
        f"print(' '.join(name for name in {STEP_LIBRARIES!r} if name in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    if output.returncode:
        raise RuntimeError(f"loading the definitions failed:\n{output.stderr}")
    return output.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from ftassets.artifacts import machine_facts, source_commit

    for code in LOADS.values():  # once each first: the page cache, not the first round, pays for the files
        cpu_seconds(code)
    samples: dict[str, list[float]] = {name: [] for name in LOADS}
    for round_ in range(args.rounds):
        for name, code in LOADS.items():
            samples[name].append(cpu_seconds(code))
        print(f"round {round_ + 1}: " + ", ".join(f"{name} {values[-1]:.2f} s" for name, values in samples.items()))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    result = {
        "definitions_cpu_s": round(medians["definitions"], 2),
        "with_step_libraries_cpu_s": round(medians["with_step_libraries"], 2),
        "dagster_cpu_s": round(medians["dagster"], 2),
        "ratio": round(medians["with_step_libraries"] / medians["definitions"], 2),
        "loaded_with_definitions": loaded_with_definitions(),
        "rounds": args.rounds,
        "python_dont_write_bytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        "commit": source_commit(),
        "machine": {key: value for key, value in machine_facts().items() if key != "torch_threads"},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
