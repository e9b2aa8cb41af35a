"""The LLM judge through the real openai SDK against a loopback server that speaks /v1/chat/completions."""

import pytest
from fakes.openai_chat import JudgeEndpoint, serving

from ftassets.config import ConfigError
from ftassets.config.schemas import JudgeSettings
from ftassets.evaluation.judge import LLMJudge, parse_verdict


@pytest.fixture()
def endpoint(monkeypatch):
    JudgeEndpoint.requests = []
    with serving(JudgeEndpoint) as server:
        monkeypatch.setenv("FTASSETS_JUDGE_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
        monkeypatch.setenv("FTASSETS_JUDGE_API_KEY", "test-key")
        yield server


def test_judge_scores_through_an_openai_compatible_endpoint(endpoint):
    settings = JudgeSettings(enabled=True, model="judge-model", rubric_version="7", rubric="Grade it. Reply JSON.")
    judge = LLMJudge.from_settings(settings)
    result = judge.score(["p1", "p2", "p3", "p4"], ["a", "b", "c", "d"], ["a", "wrong", "c", "garbage"])
    # scores 5, 2, 5 on a 1..5 scale -> (1 + 0.25 + 1) / 3; the unparseable reply is counted, not scored
    assert result["judge_score"] == pytest.approx((1 + 0.25 + 1) / 3)
    assert result["judge_parse_failures"] == 1.0
    first = JudgeEndpoint.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer test-key"
    assert first["body"]["model"] == "judge-model" and first["body"]["messages"][0] == {
        "role": "system",
        "content": "Grade it. Reply JSON.",
    }
    assert "temperature" not in first["body"], "GPT-5 family models reject temperature"


def test_judge_without_its_endpoint_says_which_variables(monkeypatch):
    monkeypatch.delenv("FTASSETS_JUDGE_BASE_URL", raising=False)
    monkeypatch.delenv("FTASSETS_JUDGE_API_KEY", raising=False)
    with pytest.raises(
        ConfigError,
        match=r"evaluation\.judge\.enabled is true but \$FTASSETS_JUDGE_BASE_URL, \$FTASSETS_JUDGE_API_KEY are not set",
    ):
        LLMJudge.from_settings(JudgeSettings(enabled=True))


@pytest.mark.parametrize(
    "reply, score",
    [
        ('{"score": 4, "reason": "ok"}', 4),
        ('Score: {"score": 9}', None),
        ("no json", None),
        ('{"reason": "missing"}', None),
    ],
)
def test_verdicts_are_parsed_strictly(reply, score):
    assert parse_verdict(reply).score == score
