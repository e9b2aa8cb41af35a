"""ftassets: LLM/SLM fine-tuning experiments as a Dagster asset graph."""

__version__ = "0.1.0"
