from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]



def pytest_configure(config):
    """Under pytest-xdist each of the two workers owns one core: one torch thread each, in its child
    processes too, instead of two threads per worker fighting over both cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def world(tmp_path_factory, worker_id):
    """The shipped configs materialized once for the whole test run: every method's entry on classification,
    in a persistent Dagster instance. Tests that need a real, trained lineage (e2e, export, UI) share it.

    Under pytest-xdist the first worker to ask builds it in the run's shared temporary folder, under a file
    lock; the other worker waits and reuses it (the first run's report is kept beside it)."""
    import pickle
    import shutil

    import dagster as dg
    from filelock import FileLock

    from ftassets.artifacts import ArtifactStore
    from ftassets.config import load_project_config
    from ftassets.definitions import build_definitions
    from ftassets.runner import PipelineRunner

    root = tmp_path_factory.mktemp("e2e") if worker_id == "master" else tmp_path_factory.getbasetemp().parent / "e2e_world"
    dagster_home, home = root / "dagster_home", root / "ftassets_home"
    project = load_project_config(REPO / "configs")
    defs = build_definitions(project.config_dir, home)
    with FileLock(str(root) + ".lock"):
        built = (root / "first_run.pickle").exists()
        if not built:
            dagster_home.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
        instance = dg.DagsterInstance.from_config(str(dagster_home))
        runner = PipelineRunner(defs, project, ArtifactStore(home), instance, log=lambda line: print(line, flush=True))
        if not built:
            first = runner.run(["classification"], list(project.experiments.experiments["methods"].models), forgetting=False)
            (root / "first_run.pickle").write_bytes(pickle.dumps(first))
        first = pickle.loads((root / "first_run.pickle").read_bytes())
    return dict(root=root, dagster_home=dagster_home, home=home, project=project, defs=defs, instance=instance, runner=runner, first=first)


@pytest.fixture()
def chromium(tmp_path):
    """A headless Debian Chromium under selenium, with a fresh profile and no background networking
    (this machine's closed network refuses it); quit after the test."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,900",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()
