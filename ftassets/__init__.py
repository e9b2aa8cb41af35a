"""ftassets: LLM/SLM fine-tuning experiments as a Dagster asset graph."""

import os

# First, so its log filter is in place before anything imports transformers' Trainer (which loads peft and
# bitsandbytes, and bitsandbytes logs a harmless line as it loads).
import ftassets.training.quiet  # noqa: F401

__version__ = "0.1.0"

# Per-file progress bars from datasets and transformers flood Dagster's captured logs; training and
# evaluation report their own progress through the run's logger instead.
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
