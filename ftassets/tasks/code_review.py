"""Code review: name the one planted bug of a short Python function or diff, and say what is wrong.

Each synthetic snippet comes from a template that writes a correct version and a version with one bug of a known
category (an off-by-one, an unchecked None, a leaked resource, SQL built from strings), with random names and
constants. The snippet is shown as the buggy function, or as the hunks of a unified diff from the correct version
to the buggy one (``params.diff_share`` of them, half by default). The answer is ``<category>: <comment>``, e.g.
``resource_leak: the file from open(path) is never closed; open it in a with block.``

Scoring: ``category_accuracy``, the share of answers whose first line names the right category (parsed as a
classification over the four categories, with aliases such as ``off-by-one``), and ``rougeL``, the ROUGE-L F-measure
of the answer's comment (the text after the category) against the reference comment. A task with a ``source``
reads the user's ``fields`` rows: ``code``, ``category`` (one of the four) and ``comment``.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from statistics import fmean
from typing import Any

from ftassets.tasks._scoring import first_line, rouge_f_measures, zero_metrics
from ftassets.tasks.base import Scored, TaskType, source_text
from ftassets.tasks.classification import UNPARSED, ClassificationTask

CATEGORIES = ("off_by_one", "unchecked_none", "resource_leak", "sql_injection")
ALIASES = {
    "off by one": "off_by_one",
    "off-by-one": "off_by_one",
    "unchecked none": "unchecked_none",
    "none check": "unchecked_none",
    "resource leak": "resource_leak",
    "sql injection": "sql_injection",
}
FORMS = ("function", "diff")
DEFAULT_DIFF_SHARE = 0.5

COLLECTIONS = ("items", "orders", "scores", "readings", "prices", "values", "rows", "events", "samples", "totals")
ENTITIES = ("user", "order", "customer", "invoice", "product", "ticket", "account", "booking")
COLUMNS = ("email", "name", "city", "status", "title", "country", "phone", "owner")
ENV_VARIABLES = ("API_HOSTS", "ALLOWED_USERS", "FEATURE_FLAGS", "PROXY_LIST", "ADMIN_EMAILS", "EXTRA_PATHS")
STRING_METHODS = ("strip", "lower", "upper", "title")
MESSAGES = ("PING", "HELLO", "STATUS", "VERSION", "QUIT", "LIST", "STATS")
PATHS = ("path", "filename", "file_path", "source", "location")
HANDLES = ("handle", "stream", "infile", "fh", "data")
WORDS = ("word", "needle", "text", "key", "pattern")
KEYS = ("key", "name", "code", "item_id")
FALLBACK_TEXTS = ('""', "None", '"unknown"', '"-"')


@dataclass(frozen=True)
class Flaw:
    """One drawn snippet: the correct and the buggy source of the same function, and what a reviewer should say."""

    category: str
    fixed: str
    buggy: str
    comment: str


def _flaw(category: str, source: str, fixed: str, buggy: str, comment: str) -> Flaw:
    """The two versions of ``source``, a function whose ``{slot}`` holds the lines that differ (indented as it is)."""
    return Flaw(category, source.format(slot=fixed), source.format(slot=buggy), comment)


def _loop_stops_early(rng: random.Random) -> Flaw:
    items, limit = rng.choice(COLLECTIONS), rng.randint(2, 90)
    name = rng.choice(("count_large", "count_above", "how_many_over"))
    source = f"def {name}({items}):\n    count = 0\n{{slot}}\n        if {items}[i] > {limit}:\n"
    source += "            count += 1\n    return count"
    return _flaw(
        "off_by_one",
        source,
        f"    for i in range(len({items})):",
        f"    for i in range(len({items}) - 1):",
        f"range(len({items}) - 1) stops early, so the last item is never checked; use range(len({items})).",
    )


def _range_leaves_out_end(rng: random.Random) -> Flaw:
    name, n = rng.choice((("sum_up_to", "n"), ("total_to", "limit"), ("add_numbers", "last")))
    step = rng.randint(1, 9)
    return _flaw(
        "off_by_one",
        f"def {name}({n}):\n{{slot}}",
        f"    return sum(i * {step} for i in range(1, {n} + 1))",
        f"    return sum(i * {step} for i in range(1, {n}))",
        f"range(1, {n}) leaves out {n} itself; use range(1, {n} + 1).",
    )


def _page_skips_first(rng: random.Random) -> Flaw:
    items, size = rng.choice(COLLECTIONS), rng.choice((10, 20, 25, 50))
    name = rng.choice(("page_of", "get_page", "paginate"))
    return _flaw(
        "off_by_one",
        f"def {name}({items}, page):\n{{slot}}\n    return {items}[start:start + {size}]",
        f"    start = (page - 1) * {size}",
        f"    start = page * {size}",
        f"pages count from 1, so page * {size} skips the first page; start at (page - 1) * {size}.",
    )


def _index_past_end(rng: random.Random) -> Flaw:
    items, target = rng.choice(COLLECTIONS), rng.randint(0, 99)
    name = rng.choice(("find_index", "position_of", "index_of"))
    source = f"def {name}({items}):\n    i = 0\n{{slot}}\n        if {items}[i] == {target}:\n"
    source += "            return i\n        i += 1\n    return -1"
    return _flaw(
        "off_by_one",
        source,
        f"    while i < len({items}):",
        f"    while i <= len({items}):",
        f"i <= len({items}) reads one past the end and raises IndexError; use i < len({items}).",
    )


def _neighbours_past_end(rng: random.Random) -> Flaw:
    items = rng.choice(COLLECTIONS)
    name = rng.choice(("differences", "steps_between", "changes"))
    body = f"    return [{items}[i + 1] - {items}[i] for i in range({{stop}})]"
    return _flaw(
        "off_by_one",
        f"def {name}({items}):\n{{slot}}",
        body.format(stop=f"len({items}) - 1"),
        body.format(stop=f"len({items})"),
        f"{items}[i + 1] runs one past the end and raises IndexError; stop at range(len({items}) - 1).",
    )


def _dict_get_unchecked(rng: random.Random) -> Flaw:
    entity, method, key = rng.choice(ENTITIES), rng.choice(STRING_METHODS), rng.choice(KEYS)
    mapping, name = f"{entity}_names", rng.choice(("display_name", "clean_name", "label_for"))
    return _flaw(
        "unchecked_none",
        f"def {name}({mapping}, {key}):\n    value = {mapping}.get({key})\n{{slot}}    return value.{method}()",
        f"    if value is None:\n        return {rng.choice(FALLBACK_TEXTS)}\n",
        "",
        f"{mapping}.get({key}) returns None for a missing key, so value.{method}() fails; check for None.",
    )


def _regex_match_unchecked(rng: random.Random) -> Flaw:
    column, pattern = rng.choice(COLUMNS), rng.choice(("=(\\w+)", ": (\\w+)", "=(\\d+)", " is (\\w+)"))
    name = rng.choice((f"parse_{column}", f"read_{column}", f"{column}_from_line"))
    return _flaw(
        "unchecked_none",
        f'def {name}(line):\n    match = re.match(r"{column}{pattern}", line)\n{{slot}}    return match.group(1)',
        f"    if match is None:\n        return {rng.choice(FALLBACK_TEXTS)}\n",
        "",
        "re.match returns None when the line does not match, so match.group(1) fails; check for None.",
    )


def _lookup_unchecked(rng: random.Random) -> Flaw:
    entity, column = rng.choice(ENTITIES), rng.choice(COLUMNS)
    name = rng.choice((f"{entity}_{column}", f"get_{entity}_{column}", f"{column}_of_{entity}"))
    store, error = rng.choice(("db", "repo", "store", "session")), rng.choice(("KeyError", "LookupError", "ValueError"))
    return _flaw(
        "unchecked_none",
        f"def {name}({store}, {entity}_id):\n    {entity} = {store}.find_{entity}({entity}_id)\n{{slot}}"
        f"    return {entity}.{column}",
        f"    if {entity} is None:\n        raise {error}({entity}_id)\n",
        "",
        f"find_{entity} returns None when no {entity} has that id, so {entity}.{column} fails; handle None.",
    )


def _environment_unchecked(rng: random.Random) -> Flaw:
    variable = rng.choice(ENV_VARIABLES)
    name = rng.choice(("configured_" + variable.lower(), "read_" + variable.lower(), variable.lower()))
    separator, value = rng.choice((",", ";", ":", " ")), rng.choice(("value", "raw", "setting"))
    return _flaw(
        "unchecked_none",
        f'def {name}():\n    {value} = os.environ.get("{variable}")\n{{slot}}    return {value}.split("{separator}")',
        f"    if {value} is None:\n        return []\n",
        "",
        f"os.environ.get returns None when {variable} is not set, so {value}.split fails; check for None.",
    )


def _file_never_closed(rng: random.Random) -> Flaw:
    name = rng.choice(("read_lines", "load_lines", "lines_of", "read_all", "load_text"))
    path, handle, how = rng.choice(PATHS), rng.choice(HANDLES), rng.choice(("read().splitlines()", "readlines()"))
    return _flaw(
        "resource_leak",
        f"def {name}({path}):\n{{slot}}",
        f"    with open({path}) as {handle}:\n        return {handle}.{how}",
        f"    {handle} = open({path})\n    return {handle}.{how}",
        f"the file from open({path}) is never closed; open it in a with block.",
    )


def _written_file_never_closed(rng: random.Random) -> Flaw:
    name = rng.choice(("save_text", "write_report", "store_notes", "append_log", "dump_lines"))
    path, mode, text = rng.choice(PATHS), rng.choice(("w", "a")), rng.choice(("text", "content", "report", "lines"))
    return _flaw(
        "resource_leak",
        f"def {name}({path}, {text}):\n{{slot}}",
        f'    with open({path}, "{mode}") as out:\n        out.write({text})',
        f'    out = open({path}, "{mode}")\n    out.write({text})',
        f"the file out is never closed, so {text} may never be written; open it in a with block.",
    )


def _early_return_leaks(rng: random.Random) -> Flaw:
    name = rng.choice(("first_match", "find_line", "line_with", "first_line_with", "search_file"))
    path, handle, word = rng.choice(PATHS), rng.choice(HANDLES), rng.choice(WORDS)
    source = f"def {name}({path}, {word}):\n    {handle} = open({path})\n    for line in {handle}:\n"
    source += f"        if {word} in line:\n{{slot}}            return line\n    {handle}.close()\n    return None"
    return _flaw(
        "resource_leak",
        source,
        f"            {handle}.close()\n",
        "",
        f"the early return skips {handle}.close(), so the file stays open; close it before that return too.",
    )


def _connection_never_closed(rng: random.Random) -> Flaw:
    entity, column = rng.choice(ENTITIES), rng.choice(COLUMNS)
    name = rng.choice((f"all_{entity}_{column}", f"list_{column}", f"{entity}_{column}_column"))
    connection, path = rng.choice(("connection", "conn", "db")), rng.choice(("db_path", "database", "path"))
    source = f"def {name}({path}):\n    {connection} = sqlite3.connect({path})\n"
    source += f'    rows = {connection}.execute("SELECT {column} FROM {entity}s").fetchall()\n{{slot}}'
    source += "    return [row[0] for row in rows]"
    return _flaw(
        "resource_leak",
        source,
        f"    {connection}.close()\n",
        "",
        f"the connection {connection} is never closed; close it after fetching the rows.",
    )


def _socket_never_closed(rng: random.Random) -> Flaw:
    message = rng.choice(MESSAGES)
    name = rng.choice((f"send_{message.lower()}", f"ask_{message.lower()}", f"{message.lower()}_server"))
    size = rng.choice((512, 1024, 2048, 4096))
    source = (
        f'def {name}(host, port):\n    sock = socket.create_connection((host, port))\n    sock.sendall(b"{message}")\n'
    )
    return _flaw(
        "resource_leak",
        source + "{slot}",
        f"    reply = sock.recv({size})\n    sock.close()\n    return reply",
        f"    return sock.recv({size})",
        "the socket sock is never closed; close it before returning the reply.",
    )


def _sql_f_string(rng: random.Random) -> Flaw:
    entity, column = rng.choice(ENTITIES), rng.choice(COLUMNS)
    name = rng.choice((f"find_{entity}s_by_{column}", f"{entity}s_with_{column}", f"search_{entity}s"))
    select = f"SELECT * FROM {entity}s WHERE {column} = "
    return _flaw(
        "sql_injection",
        f"def {name}(cur, {column}):\n{{slot}}\n    return cur.fetchall()",
        f'    cur.execute("{select}?", ({column},))',
        f"    cur.execute(f\"{select}'{{{column}}}'\")",
        f"an f-string puts {column} into the SQL, which allows injection; pass it as a ? parameter.",
    )


def _sql_concatenated(rng: random.Random) -> Flaw:
    entity = rng.choice(ENTITIES)
    name = rng.choice((f"delete_{entity}", f"remove_{entity}", f"drop_{entity}"))
    delete = f"DELETE FROM {entity}s WHERE id = "
    return _flaw(
        "sql_injection",
        f"def {name}(cur, {entity}_id):\n{{slot}}",
        f'    cur.execute("{delete}?", ({entity}_id,))',
        f'    cur.execute("{delete}" + {entity}_id)',
        f"{entity}_id is concatenated into the SQL, which allows injection; pass it as a ? parameter.",
    )


def _sql_percent_formatted(rng: random.Random) -> Flaw:
    entity, column = rng.choice(ENTITIES), rng.choice(COLUMNS)
    name = rng.choice((f"set_{column}", f"update_{entity}_{column}", f"rename_{entity}"))
    update = f"UPDATE {entity}s SET {column} = "
    return _flaw(
        "sql_injection",
        f"def {name}(cur, key, value):\n{{slot}}",
        f'    cur.execute("{update}? WHERE id = ?", (value, key))',
        f"    cur.execute(\"{update}'%s' WHERE id = %s\" % (value, key))",
        "% formatting puts value into the SQL, which allows injection; use ? parameters.",
    )


def _sql_format_method(rng: random.Random) -> Flaw:
    entity, column = rng.choice(ENTITIES), rng.choice(COLUMNS)
    name = rng.choice((f"search_{column}", f"match_{entity}s", f"{entity}s_like"))
    like = f"SELECT id FROM {entity}s WHERE {column} LIKE "
    return _flaw(
        "sql_injection",
        f"def {name}(cur, term):\n{{slot}}\n    return cur.fetchall()",
        f'    cur.execute("{like}?", (term,))',
        f"    cur.execute(\"{like}'{{}}'\".format(term))",
        "str.format puts term into the SQL, which allows injection; pass it as a ? parameter.",
    )


TEMPLATES: dict[str, tuple[Callable[[random.Random], Flaw], ...]] = {
    "off_by_one": (_loop_stops_early, _range_leaves_out_end, _page_skips_first, _index_past_end, _neighbours_past_end),
    "unchecked_none": (_dict_get_unchecked, _regex_match_unchecked, _lookup_unchecked, _environment_unchecked),
    "resource_leak": (
        _file_never_closed,
        _written_file_never_closed,
        _early_return_leaks,
        _connection_never_closed,
        _socket_never_closed,
    ),
    "sql_injection": (_sql_f_string, _sql_concatenated, _sql_percent_formatted, _sql_format_method),
}
CATEGORY_CLASSIFIER = ClassificationTask().bind({"labels": list(CATEGORIES), "aliases": ALIASES}, synthetic=False)
"""Finds the category in an answer, as a classification over the four categories finds its label."""


def unified_diff(fixed: str, buggy: str) -> str:
    """The change from ``fixed`` to ``buggy`` as the hunks of a unified diff, with one line of context (no file
    header: the snippets are short, and a tiny model's context is too)."""
    lines = difflib.unified_diff(fixed.splitlines(), buggy.splitlines(), lineterm="", n=1)
    return "\n".join(list(lines)[2:])


def split_answer(text: object) -> tuple[str | None, str]:
    """(category, comment) of an answer: the first category named in its first line, and the text after the first
    colon of that line (the whole line when it has none)."""
    line = first_line(text) or ""
    category = CATEGORY_CLASSIFIER.parse(line, {})
    before, colon, after = line.partition(":")
    return category, (after if colon else before).strip()


class CodeReviewTask(TaskType):
    name = "code_review"
    fields = ("code",)
    metric_names = ("category_accuracy", "rougeL", "parse_failures")
    """``category_accuracy``: the share of answers naming the planted bug's category; ``rougeL``: the mean ROUGE-L
    F-measure of the answers' comments against the reference comments; ``parse_failures``: answers naming no
    category."""
    default_primary_metric = "category_accuracy"
    default_prompt_template = (
        'Name the bug (off_by_one, unchecked_none, resource_leak or sql_injection) as "category: comment".\n\n{code}'
    )
    default_max_new_tokens = 96
    label_field = "category"
    allowed_params = frozenset({"diff_share"})
    source_schemas = ("fields",)

    def validate_params(self, params: dict[str, Any]) -> list[str]:
        problems = super().validate_params(params)
        if "diff_share" not in params:
            return problems
        if not self.synthetic:
            return [*problems, "diff_share steers the synthetic generator; a task with a source takes its rows"]
        share = params["diff_share"]
        if not isinstance(share, Real) or isinstance(share, bool) or not 0 <= share <= 1:
            problems.append(f"diff_share must be a number from 0 to 1, got {share!r}")
        return problems

    def generate(self, count: int, rng: random.Random, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.check_params(params)
        diff_share = params.get("diff_share", DEFAULT_DIFF_SHARE)
        first = rng.randrange(len(CATEGORIES))
        records = []
        for index in range(count):
            category = CATEGORIES[(first + index) % len(CATEGORIES)]
            template = rng.choice(TEMPLATES[category])
            flaw = template(rng)
            form = "diff" if rng.random() < diff_share else "function"
            code = unified_diff(flaw.fixed, flaw.buggy) if form == "diff" else flaw.buggy
            records.append(
                {
                    "code": code,
                    "category": flaw.category,
                    "comment": flaw.comment,
                    "fixed": flaw.fixed,
                    "form": form,
                    "template": template.__name__.lstrip("_"),
                }
            )
        return records

    def reference(self, record: dict[str, Any]) -> str:
        return f"{record['category']}: {record['comment']}"

    def parse(self, text: str, record: dict[str, Any]) -> str | None:
        """The category named in the answer's first line (None when it names none)."""
        return split_answer(text)[0]

    def score(self, records: list[dict[str, Any]], predictions: list[str]) -> Scored:
        answers = [split_answer(text) for _, text in zip(records, predictions, strict=True)]
        per_example = []
        for record, (category, comment) in zip(records, answers):
            rouge = rouge_f_measures(comment, record["comment"])["rougeL"]
            per_example.append(
                {"parsed": category, "correct": category == record["category"], "comment": comment, "rougeL": rouge}
            )
        if not records:
            return Scored(zero_metrics(self.metric_names), per_example)
        truth = [record["category"] for record in records]
        predicted = [UNPARSED if category is None else category for category, _ in answers]
        from sklearn.metrics import accuracy_score

        metrics = {
            "category_accuracy": float(accuracy_score(truth, predicted)),
            "rougeL": fmean(example["rougeL"] for example in per_example),
            "parse_failures": float(predicted.count(UNPARSED)),
        }
        return Scored(metrics, per_example)

    def rejected(self, record: dict[str, Any], rng: random.Random) -> str:
        """The row's own rejected answer (a preference row), else another category with a comment of that category's
        templates (names drawn afresh)."""
        if stored := self.stored_rejected(record):
            return stored
        category = rng.choice([other for other in CATEGORIES if other != record["category"]])
        return f"{category}: {rng.choice(TEMPLATES[category])(rng).comment}"

    def validate_record(self, record: dict[str, Any]) -> list[str]:
        problems = [
            f"field {name!r} is missing or empty"
            for name in ("code", "category", "comment")
            if not isinstance(record.get(name), str) or not record[name].strip()
        ]
        if not problems and record["category"] not in CATEGORIES:
            problems.append(f"category {record['category']!r} is not one of {list(CATEGORIES)}")
        return problems

    def record_from_source(self, row: dict[str, Any], schema: str, origin: str) -> dict[str, Any]:
        """A ``fields`` row's ``code``, ``category`` and ``comment``."""
        return {name: source_text(row, name, origin).strip() for name in ("code", "category", "comment")}
