from __future__ import annotations

from pathlib import Path

import pytest

TINY_SPEC = dict(
    vocab_size=512,
    hidden_size=256,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    pretrain_steps=40,
    pretrain_batch_size=8,
    pretrain_seq_length=64,
    corpus_documents=800,
)


@pytest.fixture(scope="session")
def single_cpu_thread():
    """Tiny models on a shared 2-core machine run several times faster on one thread than on two
    threads that wait for each other whenever another process holds a core."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory, single_cpu_thread) -> Path:
    """A ~1M-parameter embedded base model (tokenizer, chat template, weights), built in a few seconds."""
    from ftassets.models.embedded import EmbeddedSpec, build_embedded_model

    out_dir = tmp_path_factory.mktemp("tiny_base")
    build_embedded_model(out_dir, EmbeddedSpec(**TINY_SPEC), log=lambda message: None)
    return out_dir
