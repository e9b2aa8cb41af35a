"""The real UI stack: ``dagster dev`` (webserver + daemon) on 127.0.0.1 with a temporary DAGSTER_HOME, an asset
backfill launched through the GraphQL API the UI uses, and headless Chromium on the asset pages.

One small project keeps it cheap: the classification task (smaller splits), one fully fine-tuned entry and one
base-only entry on the session's tiny base, two epochs.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ftassets.defs.partitions import cell_key, sync_model_partitions

REPO = Path(__file__).resolve().parents[1]
DOCS_IMAGES = REPO / "docs" / "images"
REFRESH_DOCS_IMAGES = "FTASSETS_REFRESH_DOCS_IMAGES"  # =1: a passing browser test copies its screenshots there
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("ui")]  # one worker owns the dagster dev and its backfill
TASK = "classification"
MODELS = ("tiny-full", "tiny-base")
LINEAGE = ("dataset", "base_model", "tokenized_splits", "adapter", "merged_model", "evaluation", "comparison")
GPU_POOL_STEPS = ("base_model", "adapter", "evaluation")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_project(root: Path, base_dir: Path) -> Path:
    config_dir = root / "configs"
    config_dir.mkdir()
    tasks = yaml.safe_load((REPO / "configs" / "tasks.yaml").read_text())["tasks"]
    task = {**tasks[TASK], "sizes": {"train": 300, "validation": 30, "test": 60}}
    (config_dir / "tasks.yaml").write_text(yaml.safe_dump({"tasks": {TASK: task}}))
    (config_dir / "models.yaml").write_text(
        yaml.safe_dump(
            {
                "bases": {"tiny": {"source": "huggingface", "id": str(base_dir)}},
                "models": {"tiny-full": {"base": "tiny", "recipe": "full"}, "tiny-base": {"base": "tiny"}},
            }
        )
    )
    (config_dir / "experiments.yaml").write_text(
        yaml.safe_dump(
            {
                "recipes": {
                    "full": {
                        "method": "full",
                        "epochs": 2,
                        "learning_rate": 1.0e-3,
                        "lr_scheduler": "constant",
                        "batch_size": 8,
                        "max_seq_length": 128,
                    }
                },
                "experiments": {"default": {"tasks": [TASK], "models": list(MODELS)}},
                "evaluation": {"batch_size": 64, "bootstrap_resamples": 200},
            }
        )
    )
    return config_dir


class GraphQL:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, **variables) -> dict:
        request = urllib.request.Request(
            self.url,
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise AssertionError(f"GraphQL answered {error.code}: {error.read().decode()[:2000]}") from None
        assert not body.get("errors"), body["errors"]
        return body["data"]


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory, tiny_base_dir):
    """``dagster dev`` serving the small project; stopped (its whole process group) at the end."""
    root = tmp_path_factory.mktemp("ui")
    config_dir = write_project(root, tiny_base_dir)
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    # The shipped instance config, except that the run queue launches runs whose steps all wait for the gpu pool
    # (op_granularity_run_buffer, as many as max_concurrent_runs): the pool test holds the pool's slot while two runs
    # start, so only the pool, not the queue, keeps their steps apart.
    shipped = (REPO / "dagster.yaml").read_text()
    assert "    default_limit: 1\n" in shipped and "max_concurrent_runs: 4\n" in shipped, (
        "dagster.yaml's gpu pool or run limit moved; update this test"
    )
    (dagster_home / "dagster.yaml").write_text(
        shipped.replace("    default_limit: 1\n", "    default_limit: 1\n    op_granularity_run_buffer: 4\n")
    )
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "FTASSETS_HOME": str(root / "home"),
        "FTASSETS_CONFIG_DIR": str(config_dir),
        "FTASSETS_MLFLOW": "0",
        "OMP_NUM_THREADS": "1",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    sync_model_partitions(instance, MODELS)
    log = open(root / "dagster_dev.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-m", "ftassets.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        graphql = GraphQL(port)
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (root / "dagster_dev.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "dagster dev did not serve the code location within 180 s"
            try:
                locations = graphql(
                    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus"
                    " locationOrLoadError { __typename } } } } }"
                )["workspaceOrError"]["locationEntries"]
                if locations and all(e["loadStatus"] == "LOADED" for e in locations):
                    assert locations[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", locations
                    break
            except OSError:
                pass
            time.sleep(1)
        yield dict(
            root=root,
            port=port,
            graphql=graphql,
            instance=instance,
            config_dir=config_dir,
            env=env,
            location=locations[0]["name"],
        )
    finally:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if server.poll() is None:
                os.killpg(server.pid, sig)
                try:
                    server.wait(wait)
                except subprocess.TimeoutExpired:
                    continue
        log.close()
        instance.dispose()


LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}"""
STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status isAssetBackfill error { message } }
    ... on PythonError { message }
  }
}"""


def wait_for_backfill(graphql: GraphQL, backfill_id: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        status = graphql(STATUS, id=backfill_id)["partitionBackfillOrError"]
        if status["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            return status
        assert time.monotonic() < deadline, f"backfill {backfill_id} still {status['status']} after {seconds:.0f} s"
        time.sleep(3)


def comparison_lineage(defs: dg.Definitions) -> dict[str, list[str]]:
    """comparison and everything upstream of it, with the partitions of one task: asset -> partition keys."""
    lineage = {}
    for key in dg.AssetSelection.assets("comparison").upstream().resolve(defs.resolve_asset_graph()):
        if key.path[0] == "config":
            continue  # observable configuration sources: observed, never materialized
        partitions_def = defs.resolve_assets_def(key).partitions_def
        if isinstance(partitions_def, dg.MultiPartitionsDefinition):
            lineage[key.to_user_string()] = [str(cell_key(TASK, model)) for model in MODELS]
        elif isinstance(partitions_def, dg.DynamicPartitionsDefinition):
            lineage[key.to_user_string()] = list(MODELS)
        else:
            lineage[key.to_user_string()] = [TASK]
    return lineage


@pytest.fixture(scope="module")
def backfill(dagster_dev):
    """The asset backfill of comparison's lineage for one task, through the mutation the UI's launch dialog sends
    (each run's steps in one process: the default multiprocess executor would import torch once per step)."""
    from ftassets.definitions import build_definitions

    lineage = comparison_lineage(build_definitions(dagster_dev["config_dir"], dagster_dev["root"] / "home"))
    assert set(LINEAGE) <= set(lineage), lineage
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": [asset]}, "partitions": {"ranges": [{"start": key, "end": key} for key in keys]}}
            for asset, keys in lineage.items()
        ],
        "runConfigData": {"execution": {"config": {"in_process": {}}}},
        "title": f"comparison lineage for {TASK}",
    }
    launched = dagster_dev["graphql"](LAUNCH, params=params)["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    status = wait_for_backfill(dagster_dev["graphql"], backfill_id, 540)
    return dict(id=backfill_id, status=status, lineage=lineage)


def test_a_graphql_backfill_of_the_comparison_lineage_materializes_a_fine_tune_that_beats_base(dagster_dev, backfill):
    instance = dagster_dev["instance"]
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill["id"]}))
    failures = {run.run_id: run.status for run in runs if run.status != dg.DagsterRunStatus.SUCCESS}
    assert backfill["status"]["status"] == "COMPLETED_SUCCESS" and not failures, (backfill, failures)
    assert backfill["status"]["isAssetBackfill"]
    for asset, keys in backfill["lineage"].items():
        materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
        assert set(keys) <= {str(key) for key in materialized}, asset

    from ftassets.definitions import build_definitions

    defs = build_definitions(dagster_dev["config_dir"], dagster_dev["root"] / "home")
    table = defs.load_asset_value("comparison", partition_key=TASK, instance=instance).set_index(["model", "variant"])
    fine_tuned, base = table.loc[("tiny-full", "finetuned"), "accuracy"], table.loc[("tiny-full", "base"), "accuracy"]
    assert fine_tuned > base, table[["accuracy"]]
    assert table.loc[("tiny-base", "base"), "accuracy"] == base, "the base-only entry scores its base the same way"
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("comparison"), asset_partitions=[TASK]), limit=1
    )
    summary = latest.records[0].asset_materialization.metadata["summary"]
    assert isinstance(summary, dg.TableMetadataValue) and len(summary.records) == len(table), (
        "the UI shows the table as a table"
    )


def step_intervals(instance: dg.DagsterInstance, run_ids: list[str]) -> list[tuple[float, float, str]]:
    intervals = []
    for run_id in run_ids:
        started = {}
        for record in instance.get_records_for_run(run_id).records:
            event = record.event_log_entry.dagster_event
            if event is None or event.step_key not in GPU_POOL_STEPS:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = record.event_log_entry.timestamp
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                intervals.append(
                    (started[event.step_key], record.event_log_entry.timestamp, f"{run_id[:8]}:{event.step_key}")
                )
    return sorted(intervals)


def test_gpu_pool_steps_of_concurrent_runs_never_overlap(dagster_dev, backfill):
    """Two cells' evaluations as two runs, both started while the test holds the gpu pool's one slot; once it lets
    go, their steps take turns. Holding the slot makes the runs concurrent whatever the machine's speed."""
    instance, graphql = dagster_dev["instance"], dagster_dev["graphql"]
    storage = instance.event_log_storage
    holder = ("ftassets-test-holds-the-pool", "hold")
    assert storage.claim_concurrency_slot("gpu", *holder).is_claimed, storage.get_concurrency_info("gpu")
    cells = [str(cell_key(TASK, model)) for model in MODELS]
    try:
        params = {
            "partitionsByAssets": [
                {
                    "assetKey": {"path": ["evaluation"]},
                    "partitions": {"ranges": [{"start": k, "end": k} for k in cells]},
                }
            ],
            "runConfigData": {"execution": {"config": {"in_process": {}}}},
            "title": "two cells' evaluations against a held gpu pool",
        }
        launched = graphql(LAUNCH, params=params)["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        deadline = time.monotonic() + 240
        while True:  # both runs started, and each one's evaluation step waits for the slot the test holds
            waiting = {step.run_id for step in storage.get_concurrency_info("gpu").pending_steps}
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            if len(runs) == 2 and {run.run_id for run in runs} <= waiting:
                assert all(run.status == dg.DagsterRunStatus.STARTED for run in runs), [r.status for r in runs]
                break
            assert time.monotonic() < deadline, f"two runs did not both wait for the gpu pool within 240 s: {runs}"
            time.sleep(1)
    finally:
        storage.free_concurrency_slot_for_step(*holder)
    status = wait_for_backfill(graphql, backfill_id, 300)
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert status["status"] == "COMPLETED_SUCCESS", (status, [(r.run_id, r.status) for r in runs])
    assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(cells)
    intervals = step_intervals(instance, [run.run_id for run in runs])
    assert [name.split(":")[1] for *_, name in intervals] == ["evaluation", "evaluation"], intervals
    (_, first_end, first), (second_start, _, second) = intervals
    assert second_start >= first_end, f"{second} started before {first} ended: the gpu pool let two steps run at once"
    # The comparison lineage's own runs took turns too.
    intervals = step_intervals(
        instance, [r.run_id for r in instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill["id"]}))]
    )
    assert {name.split(":")[1] for *_, name in intervals} == set(GPU_POOL_STEPS)
    for (_, end, name), (start, _, next_name) in zip(intervals, intervals[1:]):
        assert start >= end, f"{next_name} started before {name} ended: the gpu pool let two steps run at once"


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian chromium and chromium-driver: bash scripts/install_test_tools.sh",
)
def test_the_browser_shows_the_asset_graph_and_the_comparisons_latest_materialization(
    dagster_dev, backfill, tmp_path, chromium
):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium
    base = f"http://127.0.0.1:{dagster_dev['port']}"
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()

    def body_text() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    def skip_welcome_dialog() -> None:
        """A fresh browser profile gets the UI's one-time "Join the Dagster community" dialog over the page."""
        try:
            WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.XPATH, "//button[normalize-space()='Skip']"))
        except TimeoutException:
            return
        driver.find_element(By.XPATH, "//button[normalize-space()='Skip']").click()

    driver.get(f"{base}/locations/{dagster_dev['location']}/asset-groups/finetuning")
    skip_welcome_dialog()
    try:
        WebDriverWait(driver, 90).until(lambda d: all(name in body_text() for name in LINEAGE))
    finally:
        (tmp_path / "asset_graph.txt").write_text(body_text())
    time.sleep(3)
    driver.save_screenshot(str(screenshots / "asset_graph.png"))

    driver.get(f"{base}/assets/comparison?partition={TASK}")
    skip_welcome_dialog()
    try:
        WebDriverWait(driver, 90).until(lambda d: "Latest materialization" in body_text() and TASK in body_text())
    finally:
        (tmp_path / "comparison.txt").write_text(body_text())
    time.sleep(3)
    text = body_text()
    driver.save_screenshot(str(screenshots / "comparison_asset.png"))
    assert "comparison" in text and "Latest materialization" in text, text[:2000]
    if os.environ.get(REFRESH_DOCS_IMAGES) == "1":
        for screenshot in screenshots.glob("*.png"):
            shutil.copy(screenshot, DOCS_IMAGES / screenshot.name)


STALE = """
query($partition: String!) {
  assetNodes(assetKeys: [{path: ["adapter"]}, {path: ["evaluation"]}]) {
    assetKey { path }
    staleStatus(partition: $partition)
    staleCauses(partition: $partition) { reason key { path } dependency { path } }
  }
}"""


def test_a_recipe_edit_turns_exactly_its_cells_stale_in_the_ui_through_the_configuration_sensor(dagster_dev, backfill):
    """The daemon's configuration_sensor observes the edit; the webserver's GraphQL staleStatus (the UI's Stale
    badge) then reports the fine-tune's adapter and evaluation stale because of config/<asset>, and the base-only
    entry's evaluation fresh."""
    graphql, config_dir = dagster_dev["graphql"], dagster_dev["config_dir"]
    tuned, base_only = str(cell_key(TASK, "tiny-full")), str(cell_key(TASK, "tiny-base"))

    def statuses(partition: str) -> dict[str, dict]:
        return {node["assetKey"]["path"][0]: node for node in graphql(STALE, partition=partition)["assetNodes"]}

    assert {name: node["staleStatus"] for name, node in statuses(tuned).items()} == {
        "adapter": "FRESH",
        "evaluation": "FRESH",
    }
    experiments = yaml.safe_load((config_dir / "experiments.yaml").read_text())
    experiments["recipes"]["full"]["learning_rate"] = 7.0e-4
    (config_dir / "experiments.yaml").write_text(yaml.safe_dump(experiments))
    deadline = time.monotonic() + 240  # the sensor ticks every 30 s; the daemon may be busy with other ticks
    # One tick records config/adapter, then config/evaluation: wait until it has recorded both.
    nodes = statuses(tuned)
    while {node["staleStatus"] for node in nodes.values()} != {"STALE"}:
        assert time.monotonic() < deadline, f"the configuration sensor did not record the edit within 240 s: {nodes}"
        time.sleep(3)
        nodes = statuses(tuned)
    for name in ("adapter", "evaluation"):
        causes = nodes[name]["staleCauses"]
        assert nodes[name]["staleStatus"] == "STALE" and causes, nodes[name]
        touched = [c for c in causes if ["config", name] in (c["key"]["path"], (c["dependency"] or {}).get("path"))]
        assert touched, causes
    assert statuses(base_only)["evaluation"]["staleStatus"] == "FRESH", "a recipe edit leaves a base-only entry alone"


CANCEL = """
mutation($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename ... on PythonError { message } } }"""


def test_a_file_dropped_while_the_daemon_runs_starts_one_backfill_of_its_tasks_lineage(dagster_dev, backfill):
    """The incoming_data_sensor as the daemon ticks it (RUNNING by default); the backfill it asks for is checked,
    then cancelled: the GraphQL test above already ran such a lineage."""
    drop = dagster_dev["root"] / "incoming" / TASK
    drop.mkdir(parents=True)
    for name, rows in (
        ("reviews.jsonl", [{"text": "Sturdy, quiet and cheap.", "label": "positive"}]),
        ("broken.jsonl", [{"text": "no label"}]),
    ):
        staging = dagster_dev["root"] / f".{name}.tmp"
        staging.write_text("".join(json.dumps(row) + "\n" for row in rows))
        staging.rename(drop / name)
    instance = dagster_dev["instance"]
    deadline = time.monotonic() + 150
    while not (requested := [b for b in instance.get_backfills() if b.tags.get("ftassets/trigger") == "incoming-data"]):
        assert time.monotonic() < deadline, "the daemon's incoming_data_sensor requested no backfill within 150 s"
        time.sleep(2)
    (new,) = requested
    dagster_dev["graphql"](CANCEL, id=new.backfill_id)
    from ftassets.definitions import build_definitions

    data = new.asset_backfill_data or new.get_asset_backfill_data(
        build_definitions(dagster_dev["config_dir"], dagster_dev["root"] / "home").resolve_asset_graph()
    )
    partitions: dict[str, set] = {}
    for asset_partition in data.target_subset.iterate_asset_partitions():
        partitions.setdefault(asset_partition.asset_key.to_user_string(), set()).add(asset_partition.partition_key)
    cells = {str(cell_key(TASK, model)) for model in MODELS}
    assert (
        partitions.pop("dataset") == {TASK}
        and partitions.pop("comparison") == {TASK}
        and partitions.pop("leaderboard") == {None}
    )
    assert partitions and all({str(key) for key in keys} == cells for keys in partitions.values()), partitions
    assert set(partitions) == set(backfill["lineage"]) - {"dataset", "base_model", "comparison"}, (
        "every cell asset, no base_model"
    )
    assert [p.name.split("-", 2)[-1] for p in (drop / "accepted").glob("*.jsonl")] == ["reviews.jsonl"]
    (reason,) = (drop / "rejected").glob("*.reason.txt")
    assert "line 1: field 'label'" in reason.read_text()
