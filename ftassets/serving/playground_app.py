"""``ftassets playground``: the Gradio app over ``playground.Playground``.

Tab "Compare": pick a task and any of its evaluated variants, type a prompt or take a test example, and every chosen
variant answers side by side, streamed, with latency, tokens and cost (and, for a test example, the reference and the
task scorer's verdict). Tab "Disagreements": the test examples on which the evaluated variants' stored answers differ,
filtered by whether one variant was right. Element ids (``elem_id``) are stable: the browser test drives them.
"""

from __future__ import annotations

import gradio as gr

from ftassets.serving.engines import Sampling
from ftassets.serving.playground import OUTCOMES, Playground, parse_stop

PANELS = 6
"""The most variants answering side by side."""


def _example_label(row: dict) -> str:
    prompt = " ".join(str(row["prompt"]).split())
    return f"{row['id']}: {prompt[:80]}"


def build_app(playground: Playground) -> gr.Blocks:
    tasks = playground.tasks()
    with gr.Blocks(title="ftassets playground", analytics_enabled=False) as app:
        gr.Markdown(
            "# ftassets playground\nEvery variant is the artifact of its cell's latest materialization, "
            "named with its data version. Greedy decoding (temperature 0) answers as the evaluation did."
        )
        task = gr.Dropdown(tasks, value=tasks[0] if tasks else None, label="Task", elem_id="task")
        with gr.Tab("Compare", elem_id="compare-tab"):
            with gr.Row():
                with gr.Column(scale=2, min_width=320):
                    variants = gr.CheckboxGroup([], label="Variants", elem_id="variants")
                    with gr.Accordion("Data versions, and variants that cannot answer", open=False):
                        availability = gr.Markdown(elem_id="availability")
                    example = gr.Dropdown([], label="Test example (optional)", elem_id="example")
                    prompt = gr.Textbox(label="Prompt", lines=3, elem_id="prompt")
                    with gr.Row():
                        temperature = gr.Slider(
                            0.0, 2.0, value=0.0, step=0.05, label="temperature", elem_id="temperature"
                        )
                        top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="top_p", elem_id="top_p")
                    with gr.Row():
                        max_tokens = gr.Number(
                            64, precision=0, minimum=1, maximum=4096, label="max tokens", elem_id="max"
                        )
                        stop = gr.Textbox(label="stop (comma-separated or a JSON list)", elem_id="stop")
                    send = gr.Button("Send", variant="primary", elem_id="send")
                with gr.Column(scale=3, min_width=480):
                    reference = gr.Markdown(elem_id="reference")
                    headers, boxes, stats = [], [], []
                    for row in range(PANELS // 2):
                        with gr.Row():
                            for i in (2 * row, 2 * row + 1):
                                with gr.Column(min_width=220):
                                    headers.append(gr.Markdown(visible=False, elem_id=f"header-{i}"))
                                    boxes.append(
                                        gr.Textbox(visible=False, lines=5, show_label=False, elem_id=f"answer-{i}")
                                    )
                                    stats.append(gr.Markdown(visible=False, elem_id=f"stats-{i}"))
        with gr.Tab("Disagreements", elem_id="disagreements-tab"):
            with gr.Row():
                filter_variant = gr.Dropdown([], label="Variant", elem_id="filter-variant")
                outcome = gr.Radio(list(OUTCOMES), value="all", label="Its answer", elem_id="outcome")
            summary = gr.Markdown(elem_id="disagreements-summary")
            table = gr.Dataframe(interactive=False, wrap=True, elem_id="disagreements")

        examples_state = gr.State({})

        def choose_task(name):
            options = playground.options(name)
            ready = [o.key for o in options if not o.unavailable]
            lines = "\n".join(f"- {o.describe}" for o in options)
            stale = playground.stale_evaluations(name)
            if stale:
                lines += "\n\nEvaluations not current: " + "; ".join(f"{m}: {why}" for m, why in stale.items())
            rows = {_example_label(row): row for row in playground.test_examples(name)}
            keys = [o.key for o in options]
            return (
                gr.update(choices=ready, value=ready[:2]),
                lines,
                gr.update(choices=list(rows), value=None),
                rows,
                gr.update(choices=keys, value=keys[-1] if keys else None),
                *show_disagreements(name, keys[-1] if keys else None, "all"),
            )

        def choose_example(label, rows):
            row = rows.get(label)
            if row is None:
                return gr.update(), ""
            return row["prompt"], f"**Reference:** {row['answer']}"

        def show_disagreements(name, variant, which):
            frame = playground.disagreements(name, variant, which)
            total = len(playground.test_examples(name))
            return f"{len(frame)} of {total} test examples where the variants' parsed answers differ", frame

        def run(name, chosen, text, label, rows, temp, nucleus, most, stops):
            row = rows.get(label) if label else None
            hidden = [gr.update(visible=False)] * PANELS
            if not chosen or not str(text).strip():
                yield [*hidden, *hidden, *hidden]
                return
            by_key = {o.key: o for o in playground.options(name, refresh=False)}
            options = [by_key[key] for key in chosen[:PANELS]]
            sampling = Sampling(
                max_tokens=int(most), temperature=float(temp), top_p=float(nucleus), stop=parse_stop(stops)
            )
            for answers in playground.answer(name, options, text, sampling, example=row):
                updates_h, updates_b, updates_s = list(hidden), list(hidden), list(hidden)
                for i, answer in enumerate(answers):
                    option = by_key[answer.key]
                    version = f" · `{option.data_version[:12]}`" if option.data_version else ""
                    updates_h[i] = gr.update(visible=True, value=f"**{answer.key}**{version}")
                    updates_b[i] = gr.update(visible=True, value=answer.text)
                    updates_s[i] = gr.update(visible=True, value=answer.stats())
                yield [*updates_h, *updates_b, *updates_s]

        app.load(
            choose_task,
            inputs=task,
            outputs=[variants, availability, example, examples_state, filter_variant, summary, table],
        )
        task.change(
            choose_task,
            inputs=task,
            outputs=[variants, availability, example, examples_state, filter_variant, summary, table],
        )
        example.change(choose_example, inputs=[example, examples_state], outputs=[prompt, reference])
        for control in (filter_variant, outcome):
            control.change(show_disagreements, inputs=[task, filter_variant, outcome], outputs=[summary, table])
        send.click(
            run,
            inputs=[task, variants, prompt, example, examples_state, temperature, top_p, max_tokens, stop],
            outputs=[*headers, *boxes, *stats],
        )
    return app


def launch(playground: Playground, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Serve the app on ``host:port``; with ``block=False`` return at once (the app runs on its own threads)."""
    app = build_app(playground)
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    app.queue(default_concurrency_limit=4)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=not block,
        ssr_mode=False,
        quiet=True,
        show_error=True,
        theme=theme,
        footer_links=[],
    )
    return app
