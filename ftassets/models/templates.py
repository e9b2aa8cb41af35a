"""Chat templates of the model families our users fine-tune, for a base whose tokenizer ships none.

``bases.<name>.chat_template`` in configs/models.yaml is either a Jinja template of its own or one of these names.
A family template's special tokens (its turn markers and end-of-turn token) are added to a tokenizer that lacks
them, and the embeddings resized, so the end of an answer is one special token: training learns to emit it and
generation (transformers and llama.cpp) stops on it. The templates render as the families' published ones do for
system, user and assistant turns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FamilyTemplate:
    template: str
    end_of_turn: str
    """The special token that closes an assistant turn."""
    special_tokens: tuple[str, ...]
    """Tokens the template emits that must be single special tokens (the end of turn among them)."""


FAMILY_TEMPLATES: dict[str, FamilyTemplate] = {
    "chatml": FamilyTemplate(
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        "<|im_end|>",
        ("<|im_start|>", "<|im_end|>"),
    ),
    "llama3": FamilyTemplate(
        "{% if bos_token %}{{ bos_token }}{% endif %}{% for message in messages %}{{ '<|start_header_id|>' + "
        "message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
        "<|eot_id|>",
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
    "phi3": FamilyTemplate(
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}",
        "<|end|>",
        ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
    ),
    "gemma": FamilyTemplate(
        "{% if bos_token %}{{ bos_token }}{% endif %}{% if messages[0]['role'] == 'system' %}"
        "{% set system = messages[0]['content'] | trim + '\\n\\n' %}{% set turns = messages[1:] %}"
        "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}{% for message in turns %}"
        "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
        "{{ '<start_of_turn>' + role + '\\n' + (system if loop.first else '') + message['content'] | trim + "
        "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}",
        "<end_of_turn>",
        ("<start_of_turn>", "<end_of_turn>"),
    ),
}


def family_template(name: str | None) -> FamilyTemplate | None:
    return FAMILY_TEMPLATES.get(name) if name else None


def apply_family_template(tokenizer, model, family: FamilyTemplate) -> list[str]:
    """Give ``tokenizer`` the family's template and special tokens (resizing ``model``'s embeddings when tokens were
    added); returns the tokens added."""
    vocabulary = tokenizer.get_vocab()
    specials = set(tokenizer.all_special_tokens)
    missing = [token for token in family.special_tokens if token not in vocabulary or token not in specials]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer))
    tokenizer.chat_template = family.template
    return missing
