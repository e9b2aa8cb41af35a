"""Azure: GPT-5 family baselines, Azure OpenAI cloud fine-tuning with its deployment lifecycle and cost,
Foundry open-model fine-tuning, and Azure ML command jobs for our own training strategies.

Imports nothing from Dagster. Secrets come only from environment variables (named in
``configs/azure.yaml``) or Entra ID, and never enter a log line, a manifest, metadata or an error.
"""
