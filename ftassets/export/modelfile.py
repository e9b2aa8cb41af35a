"""An Ollama ``Modelfile`` for an exported GGUF: FROM, a TEMPLATE derived from the chat template, stops, parameters.

Ollama templates are Go templates, so the Jinja chat template is not copied but measured: each role's
text before and after its content is found by rendering one-message conversations around a sentinel,
and the result is accepted only if it reproduces the Jinja rendering of a multi-turn conversation
exactly. A template that is not a plain per-message concatenation (one that injects a default system
prompt, say) is refused with the conversation it could not reproduce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SENTINEL = "\x00CONTENT\x00"
ROLES = ("system", "user", "assistant")


class TemplateDerivationError(ValueError):
    pass


@dataclass(frozen=True)
class RoleFrame:
    before: str
    after: str


def role_frames(render) -> tuple[str, dict[str, RoleFrame], str]:
    """(text before all messages, per-role frames, generation prompt) of ``render(messages, add_generation_prompt)``.

    The text before all messages is what the template prints for no messages at all, when that is a prefix
    of every one-message rendering."""
    singles = {}
    for role in ROLES:
        text = render([{"role": role, "content": SENTINEL}], False)
        if text.count(SENTINEL) != 1:
            raise TemplateDerivationError(
                f"the chat template does not render a lone {role!r} message's content exactly once"
            )
        singles[role] = text.split(SENTINEL)
    conversation = [
        {"role": "system", "content": "S1"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "U2"},
    ]
    expected = render(conversation, True)
    generation = render(conversation[1:2], True).removeprefix(render(conversation[1:2], False))
    for head in dict.fromkeys(("", _empty_rendering(render))):
        frames = {role: RoleFrame(before.removeprefix(head), after) for role, (before, after) in singles.items()}
        rebuilt = (
            head
            + "".join(frames[m["role"]].before + m["content"] + frames[m["role"]].after for m in conversation)
            + generation
        )
        if rebuilt == expected:
            return head, frames, generation
    raise TemplateDerivationError(
        f"the chat template is not a per-message concatenation: it renders {expected!r}, per-message frames give "
        f"{rebuilt!r}"
    )


def go_template(render) -> str:
    head, frames, generation = role_frames(render)
    branches = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}'
        f"{_literal(f.before)}{{{{ .Content }}}}{_literal(f.after)}"
        for i, (role, f) in enumerate(frames.items())
    )
    return f"{_literal(head)}{{{{- range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}{_literal(generation)}"


def modelfile(gguf_file: str, render, stop_tokens: list[str], context_length: int) -> str:
    template = go_template(render)
    if '"""' in template:
        raise TemplateDerivationError('the chat template contains """, which a Modelfile TEMPLATE cannot hold')
    lines = [f"FROM ./{gguf_file}", f'TEMPLATE """{template}"""']
    lines += [f'PARAMETER stop "{token}"' for token in dict.fromkeys(stop_tokens)]
    lines += ["PARAMETER temperature 0", f"PARAMETER num_ctx {context_length}"]
    return "\n".join(lines) + "\n"


def _literal(text: str) -> str:
    """Go template text with any ``{{``/``}}`` written as string actions, so Ollama prints them verbatim."""
    return re.sub(r"\{\{|\}\}", lambda match: '{{ "' + match.group() + '" }}', text)


def _empty_rendering(render) -> str:
    """What the template prints before any message (a BOS, say); empty when it cannot render no messages."""
    try:
        return render([], False)
    except Exception:
        return ""
