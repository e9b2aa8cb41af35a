from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import REPO, TINY_SPEC


def pytest_configure(config):
    """Under pytest-xdist each of the two workers owns one core: one torch thread each, in its child
    processes too, instead of two threads per worker fighting over both cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def environment_restored():
    """Each test leaves the process environment as it found it: ``ftassets`` commands run in-process set
    ``FTASSETS_CONFIG_DIR`` and ``DAGSTER_HOME``, and a leaked value would point a later test's child processes
    (``ftassets serve`` on the shared world, say) at another test's configuration."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)


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


COLORS = ("red", "green", "blue", "yellow")


@pytest.fixture(scope="session")
def color_splits_dir(tiny_base_dir, tmp_path_factory) -> Path:
    """Tokenized train/validation splits of a one-word task ("color: red" -> "red") saved as tokenized_splits
    writes them: what the trainer-resource and Azure ML tests train on in a few steps."""
    import random

    from ftassets.training.strategies import load_tokenizer
    from ftassets.training.tokenize import save_tokenized, tokenize_examples

    tokenizer = load_tokenizer(tiny_base_dir)
    rng = random.Random(0)
    colors = [rng.choice(COLORS) for _ in range(48)]
    train_split, _ = tokenize_examples(tokenizer, [f"color: {c}" for c in colors], colors, max_length=64)
    validation, _ = tokenize_examples(tokenizer, [f"color: {c}" for c in COLORS], list(COLORS), max_length=64)
    directory = tmp_path_factory.mktemp("color_splits")
    save_tokenized(directory, {"train": train_split, "validation": validation})
    return directory


@pytest.fixture(scope="module")
def tokenizer(tiny_base_dir):
    """The tiny base's tokenizer."""
    from ftassets.training.strategies import load_tokenizer

    return load_tokenizer(tiny_base_dir)


@pytest.fixture
def config_dir(tmp_path) -> Path:
    """A copy of the shipped ``configs/`` for a test to edit."""
    target = tmp_path / "configs"
    shutil.copytree(REPO / "configs", target)
    return target


@pytest.fixture(scope="session")
def world(tmp_path_factory, worker_id):
    """The shipped configs materialized once for the whole test run: every method's entry on classification,
    in a persistent Dagster instance (``e2e_world.py``). Tests that need a real, trained lineage share it.

    Under pytest-xdist it is built in the run's shared temporary folder by a background process that the
    first worker to collect a test needing it starts (``pytest_collection_modifyitems``); this waits for it.
    Without xdist it is built here."""
    import pickle

    import e2e_world

    reused = os.environ.get("FTASSETS_TEST_WORLD")
    if reused and (Path(reused) / e2e_world.REPORT).exists():
        # While iterating on one world test: a world an earlier run built (as the other tests left it).
        root = Path(reused)
    elif worker_id == "master":
        root = tmp_path_factory.mktemp("e2e")
        e2e_world.build(root)
    else:
        root = _shared_world_root(tmp_path_factory)
        e2e_world.wait_for(root)
    first = pickle.loads((root / e2e_world.REPORT).read_bytes())
    return {**e2e_world.open_world(root), "first": first}


def _shared_world_root(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp().parent / "e2e_world"


# Slow modules first, so that pytest-xdist's loadscope (one module per worker at a time) ends both workers
# at about the same time; the modules that need the world last, the two longest first among them.
WORLD_MODULES_FIRST = ("test_e2e.py", "test_e2e_runs.py")
SLOW_MODULES = (
    "test_ui.py",
    "test_model_families.py",
    "test_trainer_resource.py",
    "test_dpo.py",
    "test_automation.py",
    "test_under_triage_e2e.py",
)


def pytest_collection_modifyitems(session, config, items):
    """Order modules: slow ones first, those using the ``world`` fixture last (``--no-loadscope-reorder`` keeps
    this order; xdist's default puts the modules with most tests first). Under xdist, start building the world in
    the background as soon as a worker collects a test that needs it, while both workers, at a lower priority,
    run the others."""
    from filelock import FileLock

    modules_needing_world = {item.path.name for item in items if "world" in getattr(item, "fixturenames", ())}

    def rank(item):
        name = item.path.name
        if name in modules_needing_world:
            return (2, WORLD_MODULES_FIRST.index(name) if name in WORLD_MODULES_FIRST else len(WORLD_MODULES_FIRST))
        return (0, SLOW_MODULES.index(name)) if name in SLOW_MODULES else (1, 0)

    items.sort(key=rank)  # stable: tests keep their order within a module
    if modules_needing_world and os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("FTASSETS_TEST_WORLD"):
        import e2e_world

        root = _shared_world_root(config._tmp_path_factory)
        with FileLock(str(root) + ".lock"):
            if not e2e_world.being_built(root):
                config._ftassets_world_build = e2e_world.start_in_background(root)
    if os.environ.get("PYTEST_XDIST_WORKER") and not getattr(config, "_ftassets_niced", False):
        # The world build is the run's critical path: both workers (and what they start) yield a core to it.
        os.nice(5)
        config._ftassets_niced = True


def pytest_unconfigure(config):
    """An interrupted run does not leave the world build running."""
    build = getattr(config, "_ftassets_world_build", None)
    if build is not None and build.poll() is None:
        build.kill()
        build.wait()


@pytest.fixture()
def chromium(tmp_path):
    """A headless Debian Chromium under selenium, with a fresh profile and no background networking
    (this machine's closed network refuses it); quit after the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()
