"""``ftassets playground`` on the world: variants resolved through the lineage answer side by side as the evaluation
recorded them, with the scorer's verdict; the disagreements come from the stored predictions; a headless Chromium
drives the Gradio app.

``FTASSETS_SCREENSHOT_DIR=docs/images python -m pytest -n 0 ftassets_tests/test_playground.py -k browser`` refreshes
the README's screenshot; otherwise it goes to the test's temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import wait_until_served

from ftassets.artifacts import ArtifactStore
from ftassets.backends.llama_cpp_server import free_port
from ftassets.runner import PipelineRunner
from ftassets.serving.engines import Sampling
from ftassets.serving.playground import Playground, parse_stop

REPO = Path(__file__).resolve().parents[1]
TASK = "classification"
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def playground(world):
    runner = PipelineRunner(world["defs"], world["project"], ArtifactStore(world["home"]), world["instance"])
    playground = Playground(runner, device="cpu", threads=1)
    yield playground
    playground.close()


def _stored(world, model: str) -> pd.DataFrame:
    return pd.read_parquet(ArtifactStore(world["home"]).path("evaluation", model, TASK) / "predictions.parquet")


def test_options_are_the_evaluated_variants_with_their_data_versions(world, playground):
    options = {option.key: option for option in playground.options(TASK)}
    assert {"tiny/base", "tiny-lora/finetuned", "tiny-lora/gguf-q8_0", "tiny-full/finetuned"} <= set(options)
    runner = playground.runner
    lora = options["tiny-lora/finetuned"]
    assert lora.unavailable is None and lora.served.asset == "merged_model"
    assert lora.data_version == runner.recorded_version("merged_model", "tiny-lora|classification")
    assert options["tiny/base"].data_version == runner.recorded_version("base_model", "tiny-lora")
    assert playground.tasks()[0] == TASK


def test_a_test_example_is_answered_side_by_side_as_the_evaluation_recorded_it(world, playground):
    options = {option.key: option for option in playground.options(TASK)}
    chosen = [options["tiny-lora/finetuned"], options["tiny-lora/gguf-q8_0"]]
    stored = _stored(world, "tiny-lora")
    example = playground.test_examples(TASK)[0]
    sampling = Sampling(max_tokens=world["project"].tasks[TASK].max_new_tokens)
    snapshots = list(playground.answer(TASK, chosen, example["prompt"], sampling, example=example))
    answers = {answer.key: answer for answer in snapshots[-1]}
    for key, variant in (("tiny-lora/finetuned", "finetuned"), ("tiny-lora/gguf-q8_0", "gguf-q8_0")):
        answer, recorded = answers[key], stored[(stored.variant == variant) & (stored.id == example["id"])].iloc[0]
        assert answer.done and answer.error is None, answer.error
        assert answer.text.strip() == recorded.prediction.strip()
        assert answer.verdict["correct"] == recorded.correct
        assert answer.completion.completion_tokens > 0 and answer.completion.seconds > 0
        assert answer.cost_usd is not None and answer.cost_usd >= 0
        assert " s " in answer.stats() and ("correct" in answer.stats())
    typed = list(playground.answer(TASK, chosen[:1], "Review: a typed prompt", sampling))[-1][0]
    assert typed.done and typed.error is None and typed.verdict is None


def test_disagreements_are_the_stored_answers_that_differ(world, playground):
    wide = playground.predictions(TASK)
    table = playground.disagreements(TASK)
    keys = [c for c in table.columns if c not in ("id", "prompt", "reference")]
    assert "tiny/base" in keys and "tiny-lora/finetuned" in keys
    assert len(wide) == len(playground.test_examples(TASK))
    for row in table.itertuples(index=False):
        parsed = wide.loc[wide.id == row.id, [f"{k}:parsed" for k in keys]].iloc[0]
        assert parsed.nunique(dropna=False) > 1
    correct = playground.disagreements(TASK, "tiny-lora/finetuned", "correct")
    wrong = playground.disagreements(TASK, "tiny-lora/finetuned", "incorrect")
    assert len(correct) + len(wrong) == len(table)
    assert all(text.startswith("✓") for text in correct["tiny-lora/finetuned"])
    assert all(text.startswith("✗") for text in wrong["tiny-lora/finetuned"])
    with pytest.raises(ValueError, match="no evaluated variant 'nope'"):
        playground.disagreements(TASK, "nope", "correct")


def test_stop_strings_are_a_list_or_comma_separated():
    assert parse_stop("") == ()
    assert parse_stop("###, END") == ("###", "END")
    assert parse_stop('["\\n\\n", ","]') == ("\n\n", ",")
    with pytest.raises(ValueError, match="JSON list of non-empty strings"):
        parse_stop('["", 3]')


@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian chromium and chromium-driver: bash scripts/install_test_tools.sh",
)
def test_the_browser_compares_two_variants_and_lists_disagreements(world, playground, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from ftassets.serving.playground_app import launch

    port = free_port()
    app = launch(playground, port=port, block=False)
    try:
        chromium.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(chromium, 60)
        checked = wait.until(
            lambda d: (
                [b for b in d.find_elements(By.CSS_SELECTOR, "#variants input[type=checkbox]") if b.is_selected()]
                or False
            )
        )
        assert len(checked) == 2
        chromium.find_element(By.CSS_SELECTOR, "#example input").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#example li[role=option]") or False)[0].click()
        example = playground.test_examples(TASK)[0]
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#prompt textarea").get_attribute("value") or False)
        assert chromium.find_element(By.CSS_SELECTOR, "#prompt textarea").get_attribute("value") == example["prompt"]
        assert f"Reference: {example['answer']}" in chromium.find_element(By.ID, "reference").text
        chromium.find_element(By.ID, "send").click()

        def answers(driver):
            values = [
                driver.find_element(By.CSS_SELECTOR, f"#answer-{i} textarea").get_attribute("value") for i in range(2)
            ]
            stats = [driver.find_element(By.ID, f"stats-{i}").text for i in range(2)]
            return (values, stats) if all(values) and all(" s " in s for s in stats) else False

        values, stats = wait.until(answers)
        headers = [chromium.find_element(By.ID, f"header-{i}").text for i in range(2)]
        shot = Path(os.environ.get("FTASSETS_SCREENSHOT_DIR") or tmp_path)
        shot.mkdir(parents=True, exist_ok=True)
        chromium.execute_script("window.scrollTo(0, 0)")
        chromium.save_screenshot(str(shot / "playground.png"))
        assert all("tokens" in line and "correct" in line and "parsed:" in line for line in stats), stats
        assert len(set(headers)) == 2 and all(h for h in headers), headers

        tab = next(b for b in chromium.find_elements(By.CSS_SELECTOR, "button[role=tab]") if "Disagreements" in b.text)
        tab.click()
        summary = wait.until(lambda d: d.find_element(By.ID, "disagreements-summary").text or False)
        shown = int(summary.split()[0])
        assert shown == len(playground.disagreements(TASK, playground.options(TASK)[-1].key, "all"))
        if shown:
            assert wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#disagreements td") or False)
    finally:
        app.close()


def test_ftassets_playground_starts_on_the_command_line(world):
    """The user's path after a run: `ftassets playground --port P` serves the app on the recorded lineage."""
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(world["dagster_home"]),
        "FTASSETS_HOME": str(world["home"]),
        "FTASSETS_CONFIG_DIR": str(world["project"].config_dir),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ftassets", "playground", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        page = wait_until_served(process, f"http://127.0.0.1:{port}/", "ftassets playground").decode()
        assert "ftassets playground" in page
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"playground at http://127.0.0.1:{port} (tasks: {TASK}" in output, output
