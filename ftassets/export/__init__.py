"""GGUF export of merged models: the writer (public ``gguf`` package), llama.cpp quantization, the parity
gate against transformers, and an Ollama Modelfile. Imports nothing from Dagster."""
