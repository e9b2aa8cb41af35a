import random
from types import SimpleNamespace

import pytest

from ftassets.tasks import SOURCE_SCHEMAS, get_task_type, task_type_for
from ftassets.training.tokenize import IGNORE_INDEX, prompt_messages, tokenize_conversations

SUPPORT_LABELS = ["spam", "not spam", "billing issue", "refund", "other"]
ALIASES = {"junk": "spam", "ham": "not spam", "invoice problem": "billing issue"}


def task(type_: str, source: object = "data.jsonl", **params) -> SimpleNamespace:
    """What task_type_for reads of a ResolvedTask: the type, and the config's params and source."""
    return SimpleNamespace(type=type_, config=SimpleNamespace(params=params, source=source))


def support() -> object:
    return task_type_for(task("classification", labels=SUPPORT_LABELS, aliases=ALIASES))


def rows_of(counts: dict[str, dict[str, int]]) -> dict[str, list[dict]]:
    """Rows by split from {split: {label: count}}, each with an origin."""
    return {
        split: [
            {"text": f"{label} {index}", "label": label, "_origin": f"{split}.csv:{index + 2}"}
            for label, count in labels.items()
            for index in range(count)
        ]
        for split, labels in counts.items()
    }


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("not spam", "not spam"),
        ("This is SPAM.", "spam"),
        ("Not  Spam, clearly", "not spam"),
        ("junk mail", "spam"),
        ("ham", "not spam"),
        ("Billing\nissue: card declined", "billing issue"),
        ("an invoice problem, or a refund", "billing issue"),
        ("refund, then billing issue", "refund"),
        ("spammy nonsense", None),
        ("refunded", None),
        ("", None),
    ],
)
def test_user_labels_parse_first_whole_phrase_longest_first_with_aliases(text, label):
    assert support().parse(text, {}) == label


def test_user_labels_score_with_sklearn_over_the_bound_label_set():
    classification = support()
    assert classification.labels == tuple(SUPPORT_LABELS)
    truth = ["spam", "not spam", "billing issue", "refund", "other", "other"]
    records = [{"text": "t", "label": label} for label in truth]
    scored = classification.score(records, ["junk", "not spam", "invoice problem", "other", "other", "???"])
    assert [example["parsed"] for example in scored.per_example] == [
        "spam",
        "not spam",
        "billing issue",
        "other",
        "other",
        None,
    ]
    assert scored.metrics["accuracy"] == pytest.approx(4 / 6)
    assert scored.metrics["parse_failures"] == 1.0
    # per label F1: spam 1, not spam 1, billing 1, refund 0, other 2/3 (precision 1/2, recall 1/2)
    assert scored.metrics["macro_f1"] == pytest.approx((1 + 1 + 1 + 0 + 0.5) / 5)
    assert set(scored.metrics) == set(classification.metric_names)


def test_labels_from_the_data_are_sorted_and_bound_for_parsing():
    classification = task_type_for(task("classification"))
    splits = rows_of({"train": {"b": 3, "a": 3}, "validation": {"a": 1}, "test": {"b": 1, "a": 1}})
    labels = classification.labels_from_rows(splits)
    assert labels == ["a", "b"]
    bound = task_type_for(task("classification"), labels)
    assert bound.parse("B!", {}) == "b"
    with pytest.raises(ValueError, match="labels from the data"):
        classification.parse("a", {})


def test_label_validation_names_rare_test_only_undeclared_and_too_many_labels():
    classification = task_type_for(task("classification"))
    with pytest.raises(ValueError, match=r"\['rare'\].*min_examples_per_label=2.*'rare' 1 row\(s\) at train.csv:2"):
        classification.labels_from_rows(rows_of({"train": {"common": 5, "rare": 1}}))
    with pytest.raises(ValueError, match=r"\['late'\] appear only in the test split.*test.csv:2"):
        classification.labels_from_rows(rows_of({"train": {"a": 3, "b": 3}, "test": {"a": 1, "late": 2}}))
    many = rows_of({"train": {f"label{index}": 2 for index in range(4)}})
    with pytest.raises(ValueError, match=r"4 labels, more than max_labels=3.*'label0' \(2 rows\)"):
        task_type_for(task("classification", max_labels=3)).labels_from_rows(many)
    declared = support()
    with pytest.raises(ValueError, match=r"\['spamm'\] are not in params.labels.*train.csv:2"):
        declared.labels_from_rows(rows_of({"train": {"spamm": 2, **dict.fromkeys(SUPPORT_LABELS, 2)}}))


def test_params_are_checked_against_the_source():
    with pytest.raises(ValueError, match="aliases point to unknown label"):
        task_type_for(task("classification", labels=["a", "b"], aliases={"x": "c"}))
    with pytest.raises(ValueError, match="any labels need a `source`"):
        task_type_for(task("classification", source=None, labels=["spam", "ham"]))
    with pytest.raises(ValueError, match="judge"):
        task_type_for(task("instruction", metrics=["rougeL", "judge"]))
    with pytest.raises(ValueError, match="loss_on"):
        task_type_for(task("chat", loss_on="every_token"))


@pytest.mark.parametrize(
    ("type_", "schema", "row", "record"),
    [
        (
            "instruction",
            "alpaca",
            {"instruction": "Greet", "input": "", "output": "Hello", "system": "Be brief"},
            {"instruction": "Greet", "input": "", "output": "Hello", "system": "Be brief"},
        ),
        (
            "instruction",
            "prompt_completion",
            {"prompt": "Greet", "completion": "Hello"},
            {"instruction": "Greet", "input": "", "output": "Hello"},
        ),
        (
            "instruction",
            "preference",
            {"prompt": "Greet", "chosen": "Hello", "rejected": "Go away"},
            {"instruction": "Greet", "input": "", "output": "Hello", "rejected": "Go away"},
        ),
        (
            "instruction",
            "fields",
            {"instruction": "Double", "input": "2", "output": "4"},
            {"instruction": "Double", "input": "2", "output": "4"},
        ),
        ("classification", "fields", {"text": "win money", "label": "spam"}, {"text": "win money", "label": "spam"}),
        ("classification", "fields", {"text": "one", "label": 1}, {"text": "one", "label": "1"}),
        (
            "classification",
            "prompt_completion",
            {"prompt": "win money", "completion": " spam "},
            {"text": "win money", "label": "spam"},
        ),
        (
            "chat",
            "chat",
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        ),
    ],
)
def test_from_source_row_for_each_schema(type_, schema, row, record):
    task_type = task_type_for(task(type_), ["spam", "ham", "1"] if type_ == "classification" else None)
    converted = task_type.from_source_row({**row, "_origin": "data.jsonl:7"}, schema)
    assert converted == {**record, "_origin": "data.jsonl:7"}
    assert task_type.validate_record(converted) == []
    rejected = task_type.rejected(converted, random.Random(0))
    assert rejected == row.get("rejected", rejected) and rejected != task_type.reference(converted)


@pytest.mark.parametrize(
    ("type_", "schema", "row", "message"),
    [
        ("classification", "alpaca", {"instruction": "i", "output": "o"}, "'alpaca' row cannot be a classification"),
        ("classification", "fields", {"text": "t"}, "field 'label' is missing"),
        ("instruction", "alpaca", {"instruction": "i", "input": "", "output": " "}, "field 'output' must be non-empty"),
        ("instruction", "preference", {"prompt": "p", "chosen": "c"}, "field 'rejected' is missing"),
        ("chat", "chat", {"messages": [{"role": "user", "content": "Hi"}]}, "must end with an assistant turn"),
        (
            "chat",
            "chat",
            {"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]},
            "role",
        ),
        ("chat", "prompt_completion", {"prompt": "p", "completion": "c"}, "task type 'chat' takes 'chat' rows"),
        ("sql", "fields", {"question": "q", "schema": "s", "query": "SELECT 1"}, "takes no rows from a source"),
    ],
)
def test_from_source_row_errors_name_the_origin_and_the_field(type_, schema, row, message):
    with pytest.raises(ValueError, match="^data.csv:12: ") as error:
        task_type_for(task(type_)).from_source_row({**row, "_origin": "data.csv:12"}, schema)
    assert message in str(error.value)
    assert schema in SOURCE_SCHEMAS


def test_chosen_metrics_with_token_f1_and_no_rouge():
    instruction = task_type_for(task("instruction", metrics=["token_f1", "exact_match"]))
    assert instruction.metric_names == ("token_f1", "exact_match", "parse_failures")
    record = {"instruction": "Name the fruit", "input": "", "output": "The green apple"}
    scored = instruction.score([record, record, record], ["green apple", "The green apple", ""])
    # SQuAD normalisation drops "the": "green apple" matches fully; exact match stays case- and article-sensitive.
    assert scored.metrics == {
        "token_f1": pytest.approx(2 / 3),
        "exact_match": pytest.approx(1 / 3),
        "parse_failures": 1,
    }
    assert [example["correct"] for example in scored.per_example] == [1.0, 1.0, 0.0]
    summarization = task_type_for(task("summarization", metrics=["chrf", "rougeL"]))
    assert summarization.metric_names == ("chrf", "rougeL", "parse_failures")
    assert set(summarization.score([{"document": "d", "summary": "s"}], ["s"]).metrics) == {
        "chrf",
        "rougeL",
        "parse_failures",
    }


def test_user_instruction_answers_are_the_whole_text_and_prompts_skip_an_empty_input():
    instruction = task_type_for(task("instruction"))
    assert instruction.parse("line one\nline two\n", {}) == "line one\nline two"
    assert get_task_type("instruction").parse("line one\nline two\n", {}) == "line one"
    record = {"instruction": "Greet", "input": "", "output": "Hello"}
    assert instruction.render_prompt(record, instruction.default_prompt_template) == "Greet"
    assert instruction.label_field is None


CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "red"},
    {"role": "assistant", "content": "blue"},
    {"role": "user", "content": "green"},
    {"role": "assistant", "content": "yellow"},
]


def test_chat_scores_the_final_turn_and_shows_the_conversation_before_it():
    chat = task_type_for(task("chat"))
    record = {"messages": CONVERSATION}
    assert chat.reference(record) == "yellow"
    assert chat.conversation(record) == CONVERSATION[:-1]
    assert chat.render_prompt(record, chat.default_prompt_template) == (
        "System: You are terse.\nUser: red\nAssistant: blue\nUser: green"
    )
    assert chat.validate_record(record) == []
    scored = chat.score([record, record], ["yellow", "blue"])
    assert scored.metrics["rougeL"] == 0.5 and scored.metrics["parse_failures"] == 0.0
    assert chat.rejected(record, random.Random(0)) == "blue"
    assert chat.loss_on == "all_assistant_turns"
    assert task_type_for(task("chat", loss_on="last_turn")).loss_on == "last_turn"
    with pytest.raises(ValueError, match="needs a `source`"):
        chat.generate(1, random.Random(0), {})
    stored = {"messages": CONVERSATION[:-1], "prompt": "green", "answer": "yellow"}
    assert chat.reference(stored) == "yellow" and chat.validate_record(stored) == []
    assert prompt_messages(stored, "ignored: the row has a system turn") == CONVERSATION[:-1]
    assert prompt_messages({**stored, "messages": CONVERSATION}) == CONVERSATION[:-1]
    assert prompt_messages({"prompt": "p"}, "s") == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "p"},
    ]


def _targets(tokenizer, ids: list[int], labels: list[int]) -> str:
    return tokenizer.decode([token for token, label in zip(ids, labels) if label != IGNORE_INDEX])


def test_conversation_tokenization_masks_all_but_the_assistant_turns(tokenizer):
    dataset, stats = tokenize_conversations(tokenizer, [CONVERSATION], max_length=512)
    ids, labels = dataset[0]["input_ids"], dataset[0]["labels"]
    targets = _targets(tokenizer, ids, labels)
    assert "blue" in targets and "yellow" in targets
    assert "red" not in targets and "green" not in targets and "terse" not in targets
    assert labels[-1] == ids[-1] and ids[-1] in tokenizer.all_special_ids + [
        i for i, t in tokenizer.added_tokens_decoder.items() if t.special
    ]
    assert (
        stats["examples"] == 1
        and stats["truncated"] == 0
        and stats["answer_tokens"] == sum(label != IGNORE_INDEX for label in labels)
    )

    last, _ = tokenize_conversations(tokenizer, [CONVERSATION], max_length=512, loss_on="last_turn")
    assert last[0]["input_ids"] == ids
    last_targets = _targets(tokenizer, ids, last[0]["labels"])
    assert "yellow" in last_targets and "blue" not in last_targets

    short, short_stats = tokenize_conversations(tokenizer, [CONVERSATION], max_length=len(ids) - 1)
    assert short_stats["truncated"] == 1 and len(short[0]["input_ids"]) == len(ids) - 1


def test_a_single_turn_conversation_tokenizes_like_tokenize_examples(tokenizer):
    from ftassets.training.tokenize import chat_messages, tokenize_examples

    expected, _ = tokenize_examples(tokenizer, ["color: red"], ["red"], max_length=64, system_prompt="s")
    actual, _ = tokenize_conversations(tokenizer, [chat_messages("color: red", "red", "s")], max_length=64)
    assert actual[0] == expected[0]
