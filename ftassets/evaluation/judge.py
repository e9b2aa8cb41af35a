"""An LLM judge for open-ended answers, through any OpenAI-compatible chat endpoint (OpenAI, Azure's v1
API, vLLM, llama.cpp's server, ...).

The judge model, its rubric and the rubric's version live in ``configs/experiments.yaml``
(``evaluation.judge``); the endpoint and key come from the environment variables named there. A reply
that is not the JSON the rubric asks for counts in ``judge_parse_failures`` and scores nothing.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ftassets.config import ConfigError
from ftassets.config.schemas import JudgeSettings

SCORE_RANGE = (1, 5)


@dataclass(frozen=True)
class Verdict:
    score: int | None
    reason: str


class LLMJudge:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        rubric: str,
        max_completion_tokens: int = 300,
        max_workers: int = 4,
    ) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key, max_retries=2)
        self.model, self.rubric, self.max_completion_tokens, self.max_workers = (
            model,
            rubric,
            max_completion_tokens,
            max_workers,
        )

    @classmethod
    def from_settings(cls, settings: JudgeSettings) -> LLMJudge:
        missing = [name for name in (settings.base_url_env, settings.api_key_env) if not os.environ.get(name)]
        if missing:
            raise ConfigError(
                f"experiments.yaml: evaluation.judge.enabled is true but {', '.join('$' + m for m in missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set; export the judge endpoint's base URL and key, "
                "or set evaluation.judge.enabled: false"
            )
        return cls(
            os.environ[settings.base_url_env],
            os.environ[settings.api_key_env],
            settings.model,
            settings.rubric,
            settings.max_completion_tokens,
        )

    def verdict(self, prompt: str, reference: str, candidate: str) -> Verdict:
        response = self.client.chat.completions.create(
            model=self.model,
            messages=[
                {"role": "system", "content": self.rubric},
                {
                    "role": "user",
                    "content": f"Prompt:\n{prompt}\n\nReference answer:\n{reference}\n\nCandidate answer:\n{candidate}",
                },
            ],
            max_completion_tokens=self.max_completion_tokens,
        )
        return parse_verdict(response.choices[0].message.content or "")

    def score(self, prompts: list[str], references: list[str], candidates: list[str]) -> dict[str, float]:
        """Mean judge score scaled to [0, 1] over the parseable verdicts, and the count of unparseable ones."""
        with ThreadPoolExecutor(self.max_workers) as pool:
            verdicts = list(pool.map(self.verdict, prompts, references, candidates))
        scores = [v.score for v in verdicts if v.score is not None]
        low, high = SCORE_RANGE
        mean = sum((s - low) / (high - low) for s in scores) / len(scores) if scores else float("nan")
        return {"judge_score": mean, "judge_parse_failures": float(len(verdicts) - len(scores))}


def parse_verdict(text: str) -> Verdict:
    """The ``{"score": n, "reason": ...}`` object in a reply (fenced or bare); score None when there is none."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        payload = json.loads(match.group(0)) if match else None
        score = int(payload["score"])
    except (ValueError, TypeError, KeyError):
        return Verdict(None, text[:200])
    low, high = SCORE_RANGE
    return Verdict(score if low <= score <= high else None, str(payload.get("reason", "")))
