"""Natural-language questions to SQLite queries over the small company database in sql_schema.sql."""

from __future__ import annotations

import random
import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ftassets.tasks._scoring import zero_metrics
from ftassets.tasks.base import Scored, TaskType

SCHEMA_PATH = Path(__file__).with_name("sql_schema.sql")
MAX_RESULT_ROWS = 10_000
MAX_QUERY_STEPS = 2_000_000
"""A query is stopped after about this many SQLite virtual machine steps (a runaway cross join)."""
ALLOWED_FUNCTIONS = frozenset(
    {
        "count",
        "avg",
        "sum",
        "total",
        "min",
        "max",
        "round",
        "abs",
        "lower",
        "upper",
        "length",
        "coalesce",
        "ifnull",
        "substr",
        "trim",
        "like",
        "nullif",
        "iif",
    }
)

EMPLOYEE_COLUMNS = (
    ("names", ("name",)),
    ("names and salaries", ("name", "salary")),
    ("names and cities", ("name", "city")),
    ("names and hire years", ("name", "hire_year")),
)
PROJECT_COLUMNS = (
    ("names", ("name",)),
    ("names and budgets", ("name", "budget")),
    ("names and statuses", ("name", "status")),
)
COMPARISONS = (("more than", ">"), ("less than", "<"), ("over", ">"), ("under", "<"))
YEAR_COMPARISONS = (("in", "="), ("after", ">"), ("before", "<"))
AGGREGATES = (("average", "AVG"), ("highest", "MAX"), ("lowest", "MIN"), ("total", "SUM"))
QUERY_TYPES = ("list", "count", "aggregate", "top")
CONDITION_COUNT_WEIGHTS = {"list": (0, 4, 6), "count": (0, 4, 6), "aggregate": (1, 4, 5), "top": (1, 5, 4)}
"""Relative weights of asking with 0, 1 or 2 conditions, per query type."""


@dataclass(frozen=True)
class Condition:
    """One filter as the question says it and as SQL; ``{alias}`` becomes the table alias when joined."""

    phrase: str
    sql: str
    relative: bool = False
    """The phrase is a verb phrase that follows "who" / "that" ("earn more than 50000")."""
    joins_departments: bool = False


@dataclass(frozen=True)
class SchemaValues:
    """Values the question slots are filled from, read from the shipped database."""

    cities: tuple[str, ...]
    department_cities: tuple[str, ...]
    departments: tuple[str, ...]
    statuses: tuple[str, ...]
    hire_years: tuple[int, ...]


def connect_schema() -> sqlite3.Connection:
    """A fresh in-memory database built from sql_schema.sql."""
    connection = sqlite3.connect(":memory:")
    connection.executescript(SCHEMA_PATH.read_text(encoding="utf-8"))
    return connection


@cache
def schema_text() -> str:
    """One line per table, e.g. ``employees(id, name, department_id, salary, city, hire_year)``."""
    connection = connect_schema()
    lines = []
    for (table,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid").fetchall():
        columns = [column_name for _, column_name, *_ in connection.execute(f"PRAGMA table_info({table})")]
        lines.append(f"{table}({', '.join(columns)})")
    connection.close()
    return "\n".join(lines)


@cache
def schema_values() -> SchemaValues:
    connection = connect_schema()

    def distinct(column: str, table: str) -> tuple:
        rows = connection.execute(f"SELECT DISTINCT {column} FROM {table} ORDER BY {column}")
        return tuple(value for (value,) in rows)

    values = SchemaValues(
        cities=distinct("city", "employees"),
        department_cities=distinct("city", "departments"),
        departments=distinct("name", "departments"),
        statuses=distinct("status", "projects"),
        hire_years=distinct("hire_year", "employees"),
    )
    connection.close()
    return values


def _read_only_authorizer(action: int, argument1: str | None, argument2: str | None, *_: Any) -> int:
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (argument2 or "").lower() in ALLOWED_FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def connect_read_only() -> sqlite3.Connection:
    """A fresh database that runs plain SELECTs only."""
    connection = connect_schema()
    connection.set_authorizer(_read_only_authorizer)
    return connection


def run_query(connection: sqlite3.Connection, query: str) -> list[tuple] | None:
    """Result rows of one SELECT statement, or None when it is not one, fails, or runs too long."""
    if not query.lstrip().lower().startswith("select"):
        return None
    progress_calls = iter(range(MAX_QUERY_STEPS // 1000))
    connection.set_progress_handler(lambda: next(progress_calls, None) is None, 1000)
    try:
        rows = connection.execute(query).fetchmany(MAX_RESULT_ROWS)
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError):
        return None
    finally:
        connection.set_progress_handler(None, 0)
    return [tuple(round(value, 6) if isinstance(value, float) else value for value in row) for row in rows]


def result_key(rows: list[tuple] | None, ordered: bool) -> str | None:
    """A comparable form of a result: the rows in order, or as a multiset when order does not matter."""
    if rows is None:
        return None
    return repr(rows if ordered else sorted(rows, key=repr))


def _normalised(query: str) -> str:
    return " ".join(query.strip().rstrip(";").split()).lower()


def _has_answer(rows: list[tuple] | None) -> bool:
    return bool(rows) and None not in rows[0] and rows[0] != (0,)


def _describe(conditions: list[Condition], pronoun: str) -> str:
    """The conditions as words, e.g. ' in the Sales department who live in Ashford and earn over 50000'."""
    plain = [condition.phrase for condition in conditions if not condition.relative]
    relative = [condition.phrase for condition in conditions if condition.relative]
    return "".join(f" {phrase}" for phrase in plain) + (f" {pronoun} {' and '.join(relative)}" if relative else "")


def _from_where(table: str, alias: str, conditions: list[Condition]) -> tuple[str, str]:
    """The FROM ... WHERE ... part of a query and the column prefix the SELECT needs."""
    joined = any(condition.joins_departments for condition in conditions)
    prefix = f"{alias}." if joined else ""
    source = f"FROM {table} {alias} JOIN departments d ON {alias}.department_id = d.id" if joined else f"FROM {table}"
    where = " AND ".join(condition.sql.format(alias=prefix) for condition in conditions)
    return f"{source} WHERE {where}" if where else source, prefix


def _employee_conditions(rng: random.Random, values: SchemaValues) -> list[Condition]:
    department, department_city = rng.choice(values.departments), rng.choice(values.department_cities)
    year_text, year_comparison = rng.choice(YEAR_COMPARISONS)
    year = rng.choice(values.hire_years)
    city = rng.choice(values.cities)
    comparison_text, comparison = rng.choice(COMPARISONS)
    salary = rng.randrange(35_000, 95_001, 500)
    return [
        rng.choice(
            [
                Condition(f"in the {department} department", f"d.name = '{department}'", joins_departments=True),
                Condition(
                    f"in a department based in {department_city}",
                    f"d.city = '{department_city}'",
                    joins_departments=True,
                ),
            ]
        ),
        Condition(f"hired {year_text} {year}", f"{{alias}}hire_year {year_comparison} {year}"),
        Condition(f"live in {city}", f"{{alias}}city = '{city}'", relative=True),
        Condition(f"earn {comparison_text} {salary}", f"{{alias}}salary {comparison} {salary}", relative=True),
    ]


def _project_conditions(rng: random.Random, values: SchemaValues) -> list[Condition]:
    department, status = rng.choice(values.departments), rng.choice(values.statuses)
    comparison_text, comparison = rng.choice(COMPARISONS)
    budget = rng.randrange(40_000, 400_001, 5_000)
    return [
        Condition(f"run by the {department} department", f"d.name = '{department}'", joins_departments=True),
        Condition(f"are {status}", f"{{alias}}status = '{status}'", relative=True),
        Condition(f"have a budget {comparison_text} {budget}", f"{{alias}}budget {comparison} {budget}", relative=True),
    ]


def _employee_question(query_type: str, conditions: list[Condition], rng: random.Random) -> tuple[str, str]:
    source, prefix = _from_where("employees", "e", conditions)
    described = _describe(conditions, "who")
    columns_text, columns = rng.choice(EMPLOYEE_COLUMNS)
    selected = ", ".join(prefix + column for column in columns)
    if query_type == "list":
        return f"List the {columns_text} of employees{described}.", f"SELECT {selected} {source}"
    if query_type == "count":
        question = rng.choice((f"Count the employees{described}.", f"How many employees are there{described}?"))
        return question, f"SELECT COUNT(*) {source}"
    if query_type == "aggregate":
        aggregate_text, aggregate = rng.choice(AGGREGATES)
        group = f"employees{described}" if conditions else "all employees"
        return f"What is the {aggregate_text} salary of {group}?", f"SELECT {aggregate}({prefix}salary) {source}"
    order_text, order, superlative = rng.choice((("highest", "DESC", "the most"), ("lowest", "ASC", "the least")))
    limit = rng.randint(1, 5)
    ordering = f"ORDER BY {prefix}salary {order} LIMIT {limit}"
    if limit == 1:
        question = f"Among all employees{described}, who is paid {superlative}?"
        return question, f"SELECT {prefix}name {source} {ordering}"
    question = f"List the {columns_text} of the {limit} {order_text} paid employees{described}."
    return question, f"SELECT {selected} {source} {ordering}"


def _project_question(query_type: str, conditions: list[Condition], rng: random.Random) -> tuple[str, str]:
    source, prefix = _from_where("projects", "p", conditions)
    described = _describe(conditions, "that")
    columns_text, columns = rng.choice(PROJECT_COLUMNS)
    selected = ", ".join(prefix + column for column in columns)
    if query_type == "list":
        return f"List the {columns_text} of projects{described}.", f"SELECT {selected} {source}"
    if query_type == "count":
        question = rng.choice((f"Count the projects{described}.", f"How many projects are there{described}?"))
        return question, f"SELECT COUNT(*) {source}"
    if query_type == "aggregate":
        aggregate_text, aggregate = rng.choice(AGGREGATES)
        group = f"projects{described}" if conditions else "all projects"
        return f"What is the {aggregate_text} budget of {group}?", f"SELECT {aggregate}({prefix}budget) {source}"
    order_text, order = rng.choice((("most", "DESC"), ("least", "ASC")))
    limit = rng.randint(1, 5)
    ordering = f"ORDER BY {prefix}budget {order} LIMIT {limit}"
    if limit == 1:
        question = f"Among all projects{described}, which is the {order_text} expensive?"
        return question, f"SELECT {prefix}name {source} {ordering}"
    question = f"List the {columns_text} of the {limit} {order_text} expensive projects{described}."
    return question, f"SELECT {selected} {source} {ordering}"


TABLE_QUESTIONS = ((_employee_conditions, _employee_question), (_project_conditions, _project_question))
TABLE_WEIGHTS = (2, 1)
"""Employees have more columns to ask about than projects."""


def _wrong_queries(query: str, rng: random.Random, values: SchemaValues) -> list[str]:
    """Valid variations of ``query`` with one wrong value, comparison, ordering, aggregate or column."""
    wrong = []
    for literal in re.findall(r"'([^']*)'", query):
        for group in (values.cities, values.departments, values.statuses):
            if literal in group:
                other = rng.choice([value for value in group if value != literal])
                wrong.append(query.replace(f"'{literal}'", f"'{other}'", 1))
    flipped = {">": "<", "<": ">", "=": ">"}
    comparison = re.search(r"(salary|budget|hire_year) ([<>=]) (\d+)", query)
    if comparison:
        start, end = comparison.span(2)
        wrong.append(query[:start] + flipped[comparison.group(2)] + query[end:])
    for word, opposite in (
        ("DESC", "ASC"),
        ("ASC", "DESC"),
        ("MAX(", "MIN("),
        ("MIN(", "MAX("),
        ("AVG(", "SUM("),
        ("SUM(", "AVG("),
    ):
        if word in query:
            wrong.append(query.replace(word, opposite, 1))
    limit = re.search(r"LIMIT (\d+)$", query)
    if limit:
        wrong.append(f"{query[: limit.start(1)]}{int(limit.group(1)) + 1}")
    if query.startswith("SELECT name FROM employees"):
        wrong.append(query.replace("SELECT name", "SELECT city", 1))
    return wrong


class SqlTask(TaskType):
    name = "sql"
    fields = ("question", "schema")
    metric_names = ("execution_accuracy", "exact_match", "parse_failures")
    default_primary_metric = "execution_accuracy"
    default_prompt_template = "Tables:\n{schema}\nQuestion: {question}\nWrite one SQLite query that answers it."
    default_max_new_tokens = 128
    label_field = "query_type"
    allowed_params = frozenset({"max_joins"})
    source_schemas = ()
    """None: the queries are executed against the shipped schema, which the user's rows do not describe."""

    def validate_params(self, params: dict[str, Any]) -> list[str]:
        problems = super().validate_params(params)
        max_joins = params.get("max_joins", 1)
        if max_joins not in (0, 1) or isinstance(max_joins, bool):
            problems.append(f"max_joins must be 0 or 1, got {max_joins!r}")
        return problems

    def generate(self, count: int, rng: random.Random, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.check_params(params)
        allow_joins = params.get("max_joins", 1) > 0
        values, schema = schema_values(), schema_text()
        connection = connect_schema()
        records = []
        for _ in range(count):
            query_type = rng.choice(QUERY_TYPES)
            question, query = self._answerable_question(query_type, rng, values, allow_joins, connection)
            records.append({"question": question, "schema": schema, "query": query, "query_type": query_type})
        connection.close()
        return records

    @staticmethod
    def _answerable_question(
        query_type: str, rng: random.Random, values: SchemaValues, allow_joins: bool, connection: sqlite3.Connection
    ) -> tuple[str, str]:
        """Draw until the query has a non-empty, non-zero answer, which a query returning nothing cannot match."""
        while True:
            make_conditions, make_question = rng.choices(TABLE_QUESTIONS, weights=TABLE_WEIGHTS)[0]
            candidates = [
                condition
                for condition in make_conditions(rng, values)
                if allow_joins or not condition.joins_departments
            ]
            condition_count = rng.choices((0, 1, 2), weights=CONDITION_COUNT_WEIGHTS[query_type])[0]
            conditions = [candidates[index] for index in sorted(rng.sample(range(len(candidates)), condition_count))]
            question, query = make_question(query_type, conditions, rng)
            if _has_answer(run_query(connection, query)):
                return question, query

    def reference(self, record: dict[str, Any]) -> str:
        return record["query"]

    def parse(self, text: str, record: dict[str, Any]) -> str | None:
        if not isinstance(text, str):
            return None
        fenced = re.search(r"```(?:sql)?\s*(.*?)```", text, re.DOTALL | re.IGNORECASE)
        candidate = fenced.group(1) if fenced else text
        select = re.search(r"\bselect\b", candidate, re.IGNORECASE)
        if select is None:
            return None
        statement = candidate[select.start() :] if fenced else candidate[select.start() :].splitlines()[0]
        query = " ".join(statement.split(";")[0].split())
        return query or None

    def score(self, records: list[dict[str, Any]], predictions: list[str]) -> Scored:
        parsed = [self.parse(text, record) for record, text in zip(records, predictions, strict=True)]
        if not records:
            return Scored(zero_metrics(self.metric_names), [])
        connection = connect_read_only()
        expected_results, predicted_results = [], []
        for record, query in zip(records, parsed):
            ordered = re.search(r"\border\s+by\b", self.reference(record), re.IGNORECASE) is not None
            expected = result_key(run_query(connection, self.reference(record)), ordered)
            predicted = result_key(run_query(connection, query or ""), ordered)
            expected_results.append(expected or "<reference failed>")
            predicted_results.append(predicted or "<prediction failed>")
        connection.close()
        references = [_normalised(self.reference(record)) for record in records]
        normalised_predictions = [_normalised(query or "") for query in parsed]
        per_example = [
            {"parsed": query, "correct": predicted == expected, "exact_match": prediction == reference}
            for query, predicted, expected, prediction, reference in zip(
                parsed, predicted_results, expected_results, normalised_predictions, references
            )
        ]
        from sklearn.metrics import accuracy_score

        metrics = {
            "execution_accuracy": float(accuracy_score(expected_results, predicted_results)),
            "exact_match": float(accuracy_score(references, normalised_predictions)),
            "parse_failures": float(parsed.count(None)),
        }
        return Scored(metrics, per_example)

    def rejected(self, record: dict[str, Any], rng: random.Random) -> str:
        reference = self.reference(record)
        wrong = [query for query in _wrong_queries(reference, rng, schema_values()) if query != reference]
        return rng.choice(wrong) if wrong else f"{reference} LIMIT 0"
