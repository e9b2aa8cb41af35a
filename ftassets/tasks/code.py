"""Writing a small Python function from its signature and docstring, scored by running its unit tests.

The synthetic generator draws from templates at three difficulty levels (easy: one expression; medium: strings,
loops and branches; hard: lists and dicts), each with random constants, and computes the expected values of the
tests by running the template's own reference solution. A task with a ``source`` reads the user's ``fields`` rows:
``prompt`` (shown to the model), ``solution`` (the reference answer) and ``tests`` (statements, usually asserts,
that call it); a row whose solution does not pass its own tests is refused, naming the row.

An answer is the code of its first fenced block (or the text from its first ``def``/``import`` line). It scores 1
when it and then every test statement run without error in the sandbox (``_sandbox.py``: one process per example,
with wall-clock, CPU, memory and file limits, no network, no processes, no files outside its own folder); the
reason it failed is kept per example.
"""

from __future__ import annotations

import copy
import math
import random
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from numbers import Real
from statistics import fmean
from typing import Any

from ftassets.tasks import _vocab as vocab
from ftassets.tasks._sandbox import SandboxLimits, run_many, run_tests
from ftassets.tasks._scoring import zero_metrics
from ftassets.tasks.base import Scored, TaskType, source_text

LEVELS = ("easy", "medium", "hard")
DEFAULT_DIFFICULTY_MIX = {"easy": 0.4, "medium": 0.4, "hard": 0.2}
TESTS_PER_PROBLEM = 4
CANDIDATE_CASES = 10
DEFAULT_TIMEOUT_S = 3.0
DEFAULT_MEMORY_MB = 512
WORKERS = 2
WORDS = tuple(sorted({*vocab.SIMPLE_WORDS, *vocab.ANIMALS, *vocab.COLOURS, *vocab.INSTRUMENTS}))
SEPARATORS = (", ", "-", " ", "+", "|", "/", "; ", "::", "_", " & ")
PAD_CHARACTERS = "0*#.-_"
COMPARISON_WORDS = (
    ("up", "down", "flat"),
    ("gain", "loss", "even"),
    ("above", "below", "level"),
    ("positive", "negative", "zero"),
    ("hot", "cold", "mild"),
    ("win", "lose", "draw"),
)
GAME_WORDS = (("Fizz", "Buzz"), ("Ping", "Pong"), ("Tick", "Tock"), ("Foo", "Bar"), ("Hip", "Hop"), ("Zig", "Zag"))
CENSOR_MARKS = ("***", "[removed]", "X", "?", "...")
FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
CODE_START = re.compile(r"^(?:def |async def |class |import |from |@)", re.MULTILINE)
PYTHON_TAGS = ("", "python", "python3", "py")


@dataclass(frozen=True)
class Problem:
    """One drawn problem: the function's name, parameters and return type, what it must do, the bodies of a
    reference and of a plausible wrong solution, and candidate argument tuples for its tests."""

    name: str
    params: str
    returns: str
    summary: str
    body: str
    wrong: str
    cases: list[tuple]

    def source(self, body: str) -> str:
        return f"def {self.name}({self.params}) -> {self.returns}:\n{textwrap.indent(body.strip(), '    ')}\n"


def _ints(rng: random.Random, low: int, high: int, count: tuple[int, int] = (3, 6)) -> list[int]:
    return [rng.randint(low, high) for _ in range(rng.randint(*count))]


def _text(rng: random.Random, count: tuple[int, int] = (2, 5), capitalise: float = 0.0) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(*count))]
    return " ".join(word.capitalize() if rng.random() < capitalise else word for word in words)


def _cases(make: Callable[[], tuple]) -> list[tuple]:
    return [make() for _ in range(CANDIDATE_CASES)]


def _add_constant(rng: random.Random) -> Problem:
    k = rng.randint(2, 99)
    return Problem(
        rng.choice(("add_constant", "plus_constant", "increase")),
        "x: int",
        "int",
        f"Return x plus {k}.",
        f"return x + {k}",
        f"return x + {k - 1}",
        _cases(lambda: (rng.randint(-100, 100),)),
    )


def _scale_and_shift(rng: random.Random) -> Problem:
    a, b = rng.randint(2, 12), rng.randint(1, 60)
    return Problem(
        rng.choice(("scale_and_shift", "linear", "apply_rule")),
        "x: int",
        "int",
        f"Return x times {a}, plus {b}.",
        f"return x * {a} + {b}",
        f"return (x + {b}) * {a}",
        _cases(lambda: (rng.randint(-50, 50),)),
    )


def _clamp(rng: random.Random) -> Problem:
    low, high = rng.randint(-60, -1), rng.randint(1, 60)
    return Problem(
        rng.choice(("clamp", "limit", "bound")),
        "x: int",
        "int",
        f"Return x limited to the range {low} to {high}: {low} if x is below it, {high} if x is above it, else x.",
        f"return min(max(x, {low}), {high})",
        f"return max(x, {low})",
        _cases(lambda: (rng.randint(low - 50, high + 50),)),
    )


def _distance(rng: random.Random) -> Problem:
    k = rng.randint(-50, 50)
    return Problem(
        rng.choice(("distance", "gap", "how_far")),
        "x: int",
        "int",
        f"Return how far x is from {k}; the result is never negative.",
        f"return abs(x - {k})",
        f"return x - {k}",
        _cases(lambda: (rng.randint(-100, 100),)),
    )


def _multiple_but_not(rng: random.Random) -> Problem:
    k = rng.randint(2, 12)
    m = k * rng.randint(2, 5)
    return Problem(
        rng.choice(("is_multiple", "check_number", "divides_well")),
        "n: int",
        "bool",
        f"Return True if n is a multiple of {k} but not of {m}, otherwise False.",
        f"return n % {k} == 0 and n % {m} != 0",
        f"return n % {k} == 0",
        _cases(lambda: (rng.choice((k, m)) * rng.randint(1, 12) + rng.choice((0, 0, 1)),)),
    )


def _round_down(rng: random.Random) -> Problem:
    k = rng.randint(2, 50)
    return Problem(
        rng.choice(("round_down", "floor_to_step", "snap_down")),
        "n: int",
        "int",
        f"Return the largest multiple of {k} that is not greater than n.",
        f"return n // {k} * {k}",
        f"return round(n / {k}) * {k}",
        _cases(lambda: (rng.randint(-300, 300),)),
    )


def _compare_word(rng: random.Random) -> Problem:
    t = rng.randint(-20, 20)
    above, below, equal = rng.choice(COMPARISON_WORDS)
    return Problem(
        rng.choice(("compare", "describe", "classify")),
        "x: int",
        "str",
        f"Return {above!r} if x is greater than {t}, {below!r} if it is less than {t}, and {equal!r} if it equals {t}.",
        f"if x > {t}:\n    return {above!r}\nif x < {t}:\n    return {below!r}\nreturn {equal!r}",
        f"return {above!r} if x >= {t} else {below!r}",
        _cases(lambda: (rng.choice((t, rng.randint(t - 10, t + 10))),)),
    )


def _discount(rng: random.Random) -> Problem:
    p = rng.randint(5, 90)
    return Problem(
        rng.choice(("discounted_price", "sale_price", "price_after_discount")),
        "price: int",
        "int",
        f"Return price, a whole number of cents, after a discount of {p} percent, rounded down to whole cents.",
        f"return price * {100 - p} // 100",
        f"return price * {p} // 100",
        _cases(lambda: (rng.randint(100, 100_000),)),
    )


def _repeat_text(rng: random.Random) -> Problem:
    k, sep = rng.randint(2, 6), rng.choice(SEPARATORS)
    return Problem(
        rng.choice(("repeat", "echo", "copies")),
        "text: str",
        "str",
        f"Return text repeated {k} times, with {sep!r} between the copies.",
        f"return {sep!r}.join([text] * {k})",
        f"return (text + {sep!r}) * {k}",
        _cases(lambda: (_text(rng, (1, 2)),)),
    )


def _scaled_max(rng: random.Random) -> Problem:
    k, d = rng.randint(2, 20), rng.randint(0, 20)
    return Problem(
        rng.choice(("scaled_max", "larger_scaled", "best_times")),
        "a: int, b: int",
        "int",
        f"Return {k} times the larger of a and b, minus {d}.",
        f"return max(a, b) * {k} - {d}",
        f"return min(a, b) * {k} - {d}",
        _cases(lambda: (rng.randint(-30, 30), rng.randint(-30, 30))),
    )


def _count_letters(rng: random.Random) -> Problem:
    letters = "".join(sorted(rng.sample("abcdefghilmnoprstuwy", rng.randint(1, 4))))
    return Problem(
        rng.choice(("count_letters", "letter_count", "tally_letters")),
        "text: str",
        "int",
        f"Return how many characters of text are one of the letters {letters!r}, ignoring case.",
        f"return sum(1 for ch in text.lower() if ch in {letters!r})",
        f"return sum(1 for ch in text if ch in {letters!r})",
        _cases(lambda: (_text(rng, (2, 4), capitalise=0.5),)),
    )


def _fizzbuzz(rng: random.Random) -> Problem:
    a, b = sorted(rng.sample(range(2, 10), 2))
    first, second = rng.choice(GAME_WORDS)
    both = math.lcm(a, b)
    return Problem(
        rng.choice(("fizzbuzz", "say_number", "game_word")),
        "n: int",
        "str",
        f"Return {first + second!r} if n is divisible by both {a} and {b}, {first!r} if only by {a}, "
        f"{second!r} if only by {b}, else n as a string.",
        f"if n % {a} == 0 and n % {b} == 0:\n    return {first + second!r}\nif n % {a} == 0:\n    return {first!r}\n"
        f"if n % {b} == 0:\n    return {second!r}\nreturn str(n)",
        f"if n % {a} == 0:\n    return {first!r}\nif n % {b} == 0:\n    return {second!r}\nreturn str(n)",
        _cases(lambda: (rng.choice((both, a, b, 1)) * rng.randint(1, 9),)),
    )


def _caesar(rng: random.Random) -> Problem:
    k, forward = rng.randint(1, 25), rng.random() < 0.5
    sign, direction = ("+", "forward") if forward else ("-", "back")
    return Problem(
        rng.choice(("shift_letters", "caesar", "rotate_letters")),
        "text: str",
        "str",
        f"Return text with every lowercase letter moved {k} places {direction} in the alphabet, wrapping around "
        "between 'a' and 'z'; other characters stay as they are.",
        f"return ''.join(chr((ord(ch) - 97 {sign} {k}) % 26 + 97) if 'a' <= ch <= 'z' else ch for ch in text)",
        f"return ''.join(chr(ord(ch) {sign} {k}) if 'a' <= ch <= 'z' else ch for ch in text)",
        _cases(lambda: (_text(rng, (1, 3), capitalise=0.3),)),
    )


def _sum_of_multiples(rng: random.Random) -> Problem:
    a, b = rng.sample(range(2, 13), 2)
    return Problem(
        rng.choice(("sum_of_multiples", "multiples_total", "add_multiples")),
        "n: int",
        "int",
        f"Return the sum of the numbers from 1 to n, inclusive, that are multiples of {a} or {b}.",
        f"return sum(i for i in range(1, n + 1) if i % {a} == 0 or i % {b} == 0)",
        f"return sum(i for i in range(1, n) if i % {a} == 0 or i % {b} == 0)",
        _cases(lambda: (rng.choice((a, b)) * rng.randint(1, 15),)),
    )


def _long_words(rng: random.Random) -> Problem:
    k, sep = rng.randint(2, 6), rng.choice(SEPARATORS)
    return Problem(
        rng.choice(("long_words", "keep_long_words", "join_long_words")),
        "text: str",
        "str",
        f"Return the words of text that have more than {k} letters, joined by {sep!r}.",
        f"return {sep!r}.join(word for word in text.split() if len(word) > {k})",
        f"return {sep!r}.join(word for word in text.split() if len(word) >= {k})",
        _cases(lambda: (_text(rng, (3, 6)),)),
    )


def _upper_positions(rng: random.Random) -> Problem:
    start, step = rng.randint(0, 4), rng.randint(2, 7)
    return Problem(
        rng.choice(("shout_positions", "upper_every", "raise_letters")),
        "text: str",
        "str",
        f"Return text with the characters at positions {start}, {start + step}, {start + 2 * step} and so on "
        "(counting from 0) in upper case.",
        f"return ''.join(ch.upper() if i >= {start} and (i - {start}) % {step} == 0 else ch "
        "for i, ch in enumerate(text))",
        f"return ''.join(ch.upper() if i >= {start} and (i - {start} + 1) % {step} == 0 else ch "
        "for i, ch in enumerate(text))",
        _cases(lambda: (_text(rng, (1, 3)),)),
    )


def _count_between(rng: random.Random) -> Problem:
    low = rng.randint(-20, 20)
    high = low + rng.randint(1, 30)
    return Problem(
        rng.choice(("count_between", "count_in_range", "how_many_inside")),
        "values: list[int]",
        "int",
        f"Return how many numbers in values are between {low} and {high}, inclusive.",
        f"return sum(1 for v in values if {low} <= v <= {high})",
        f"return sum(1 for v in values if {low} < v < {high})",
        _cases(lambda: (_ints(rng, low - 5, high + 5, (3, 6)) + [rng.choice((low, high))],)),
    )


def _pad_number(rng: random.Random) -> Problem:
    width, pad = rng.randint(3, 8), rng.choice(PAD_CHARACTERS)
    return Problem(
        rng.choice(("pad_number", "left_pad", "fixed_width")),
        "n: int",
        "str",
        f"Return n as text, padded on the left with {pad!r} to at least {width} characters.",
        f"return str(n).rjust({width}, {pad!r})",
        f"return str(n).ljust({width}, {pad!r})",
        _cases(lambda: (rng.randint(0, 10 ** rng.randint(1, width)),)),
    )


def _censor(rng: random.Random) -> Problem:
    word, mark = rng.choice(WORDS), rng.choice(CENSOR_MARKS)
    return Problem(
        rng.choice(("censor", "hide_word", "mask_word")),
        "text: str",
        "str",
        f"Return text with every word equal to {word!r} replaced by {mark!r} (words are separated by spaces).",
        f"return ' '.join({mark!r} if w == {word!r} else w for w in text.split(' '))",
        f"return text.replace({word!r}, {mark!r}, 1)",
        _cases(lambda: (" ".join(rng.sample([word, word, *(rng.choice(WORDS) for _ in range(3))], 4)),)),
    )


def _distinct_items(rng: random.Random) -> Problem:
    k, skip = rng.randint(2, 8), rng.randint(0, 9)
    return Problem(
        rng.choice(("distinct_items", "dedupe", "first_occurrences")),
        "values: list[int]",
        "list[int]",
        f"Return the distinct items of values in the order they first appear, leaving out {skip} and keeping at "
        f"most {k} items.",
        f"seen = []\nfor item in values:\n    if item != {skip} and item not in seen:\n        seen.append(item)\n"
        f"return seen[:{k}]",
        f"return sorted(set(values) - {{{skip}}})[:{k}]",
        _cases(lambda: (_ints(rng, 0, 9, (5, 9)),)),
    )


def _running_max(rng: random.Random) -> Problem:
    floor = rng.randint(-20, 20)
    return Problem(
        rng.choice(("running_max", "best_so_far", "running_peak")),
        "values: list[int]",
        "list[int]",
        f"Return the running maximum of values: item i of the result is the largest of {floor} and values[0] to "
        "values[i].",
        f"result, best = [], {floor}\nfor item in values:\n    best = max(best, item)\n    result.append(best)\n"
        "return result",
        "return [max(values[: i + 1]) for i in range(len(values))]",
        _cases(lambda: (_ints(rng, floor - 12, floor + 12, (3, 6)),)),
    )


def _word_counts(rng: random.Random) -> Problem:
    k, stop = rng.randint(1, 5), rng.choice(WORDS)
    return Problem(
        rng.choice(("word_counts", "word_frequency", "count_words")),
        "text: str",
        "dict[str, int]",
        f"Return a dict that maps each lower-cased word of text with at least {k} letters, except {stop!r}, to the "
        "number of times it occurs.",
        f"counts = {{}}\nfor word in text.lower().split():\n    if len(word) >= {k} and word != {stop!r}:\n"
        "        counts[word] = counts.get(word, 0) + 1\nreturn counts",
        f"counts = {{}}\nfor word in text.split():\n    if len(word) >= {k} and word != {stop!r}:\n"
        "        counts[word] = counts.get(word, 0) + 1\nreturn counts",
        _cases(
            lambda: (
                " ".join(rng.choice((w, w.capitalize())) for w in rng.choices([stop, *rng.sample(WORDS, 2)], k=5)),
            )
        ),
    )


def _group_totals(rng: random.Random) -> Problem:
    k = rng.randint(2, 6)
    what, function = rng.choice((("sums", "sum"), ("largest items", "max"), ("smallest items", "min")))
    return Problem(
        rng.choice(("group_totals", "chunk_values", "per_group")),
        "values: list[int]",
        "list[int]",
        f"Split values into consecutive groups of {k} items (the last group may be shorter) and return the list of "
        f"the groups' {what}.",
        f"return [{function}(values[i : i + {k}]) for i in range(0, len(values), {k})]",
        f"return [{function}(values[i : i + {k}]) for i in range(0, len(values) - {k} + 1, {k})]",
        _cases(lambda: (_ints(rng, -9, 20, (k + 1, 3 * k)),)),
    )


def _rotate(rng: random.Random) -> Problem:
    k, right = rng.randint(1, 9), rng.random() < 0.5
    cut, wrong_cut = ("len(values) - shift", "shift") if right else ("shift", "len(values) - shift")
    return Problem(
        rng.choice(("rotate", "rotate_list", "shift_items")),
        "values: list[int]",
        "list[int]",
        f"Return values rotated {k} places to the {'right' if right else 'left'} (items that fall off one end come "
        "back at the other).",
        f"if not values:\n    return []\nshift = {k} % len(values)\nreturn values[{cut}:] + values[:{cut}]",
        f"if not values:\n    return []\nshift = {k} % len(values)\nreturn values[{wrong_cut}:] + values[:{wrong_cut}]",
        _cases(lambda: (_ints(rng, 0, 20, (3, 7)),)),
    )


def _pairs_with_sum(rng: random.Random) -> Problem:
    t = rng.randint(2, 30)
    return Problem(
        rng.choice(("pairs_with_sum", "count_pairs", "matching_pairs")),
        "values: list[int]",
        "int",
        f"Return how many pairs of positions i < j have values[i] + values[j] == {t}.",
        "count = 0\nfor i in range(len(values)):\n    for j in range(i + 1, len(values)):\n"
        f"        if values[i] + values[j] == {t}:\n            count += 1\nreturn count",
        "count = 0\nfor i in range(len(values)):\n    for j in range(len(values)):\n"
        f"        if i != j and values[i] + values[j] == {t}:\n            count += 1\nreturn count",
        _cases(lambda: (_ints(rng, 0, t, (4, 7)),)),
    )


def _words_by_length(rng: random.Random) -> Problem:
    low = rng.randint(2, 4)
    high = low + rng.randint(1, 4)
    return Problem(
        rng.choice(("words_by_length", "group_by_length", "length_groups")),
        "text: str",
        "dict[int, list[str]]",
        f"Return a dict that maps each word length from {low} to {high} letters to the list of the words of text "
        "with that length, in order; lengths with no word are left out.",
        f"groups = {{}}\nfor word in text.split():\n    if {low} <= len(word) <= {high}:\n"
        "        groups.setdefault(len(word), []).append(word)\nreturn groups",
        f"groups = {{}}\nfor word in text.split():\n    if {low} < len(word) < {high}:\n"
        "        groups.setdefault(len(word), []).append(word)\nreturn groups",
        _cases(lambda: (_text(rng, (3, 6)),)),
    )


def _longest_run(rng: random.Random) -> Problem:
    k = rng.randint(-10, 10)
    return Problem(
        rng.choice(("longest_run", "longest_streak", "run_above")),
        "values: list[int]",
        "int",
        f"Return the length of the longest run of consecutive items of values that are all greater than {k}.",
        f"best = current = 0\nfor item in values:\n    current = current + 1 if item > {k} else 0\n"
        "    best = max(best, current)\nreturn best",
        f"return sum(1 for item in values if item > {k})",
        _cases(lambda: (_ints(rng, k - 8, k + 8, (4, 8)),)),
    )


def _scaled_transpose(rng: random.Random) -> Problem:
    k = rng.choice([value for value in range(-9, 10) if value not in (0, 1)])
    return Problem(
        rng.choice(("scaled_transpose", "transpose_times", "flip_and_scale")),
        "matrix: list[list[int]]",
        "list[list[int]]",
        f"Return the transpose of matrix (a non-empty list of equal-length rows) with every entry multiplied by {k}.",
        f"return [[row[c] * {k} for row in matrix] for c in range(len(matrix[0]))]",
        f"return [[value * {k} for value in row] for row in matrix]",
        _cases(
            lambda: ([_ints(rng, -5, 9, (columns, columns)) for columns in [rng.randint(2, 3)] * rng.randint(2, 3)],)
        ),
    )


def _filter_scale(rng: random.Random) -> Problem:
    a, b = rng.randint(2, 9), rng.randint(-10, 10)
    return Problem(
        rng.choice(("filter_scale", "scale_large", "keep_and_multiply")),
        "values: list[int]",
        "list[int]",
        f"Return the items of values that are greater than {b}, each multiplied by {a}, in order.",
        f"return [v * {a} for v in values if v > {b}]",
        f"return [v * {a} for v in values if v * {a} > {b}]",
        _cases(lambda: (_ints(rng, b - 12, b + 12, (3, 6)),)),
    )


def _merge_capped(rng: random.Random) -> Problem:
    k = rng.randint(3, 30)
    return Problem(
        rng.choice(("merge_capped", "merge_sorted", "combine_lists")),
        "a: list[int], b: list[int]",
        "list[int]",
        f"Merge the sorted lists a and b into one sorted list, leaving out the items greater than {k}.",
        f"return sorted(x for x in a + b if x <= {k})",
        f"return sorted(a + b)[:{k}]",
        _cases(lambda: (sorted(_ints(rng, 0, k + 10, (2, 5))), sorted(_ints(rng, 0, k + 10, (2, 5))))),
    )


TEMPLATES: dict[str, tuple[Callable[[random.Random], Problem], ...]] = {
    "easy": (
        _add_constant,
        _scale_and_shift,
        _clamp,
        _distance,
        _multiple_but_not,
        _round_down,
        _compare_word,
        _discount,
        _repeat_text,
        _scaled_max,
    ),
    "medium": (
        _count_letters,
        _fizzbuzz,
        _caesar,
        _sum_of_multiples,
        _long_words,
        _upper_positions,
        _count_between,
        _pad_number,
        _censor,
    ),
    "hard": (
        _distinct_items,
        _running_max,
        _word_counts,
        _group_totals,
        _rotate,
        _pairs_with_sum,
        _words_by_length,
        _longest_run,
        _scaled_transpose,
        _filter_scale,
        _merge_capped,
    ),
}
TEMPLATE_NAMES = frozenset(template.__name__.lstrip("_") for templates in TEMPLATES.values() for template in templates)


def _defined(source: str, name: str) -> Callable:
    """The function a template's own source defines (the generator's code, never a model's)."""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<template {name}>", "exec"), namespace)
    return namespace[name]


def _outcome(function: Callable, args: tuple) -> Any:
    try:
        return function(*copy.deepcopy(args))
    except Exception as error:
        return error


def _call(name: str, args: tuple) -> str:
    return f"{name}({', '.join(repr(arg) for arg in args)})"


def extract_code(text: object) -> str | None:
    """The code of an answer: its first Python (or untagged) fenced block, else its first fenced block, else the text
    from its first ``def``/``import``/``class`` line, else the whole text; None when that is blank."""
    if not isinstance(text, str):
        return None
    blocks = FENCE.findall(text)
    if blocks:
        code = next((body for tag, body in blocks if tag.lower() in PYTHON_TAGS), blocks[0][1])
    else:
        start = CODE_START.search(text)
        code = text[start.start() :] if start else text
    code = textwrap.dedent(code).strip("\n").rstrip()
    return code if code.strip() else None


@lru_cache(maxsize=4096)
def reference_failure(solution: str, tests: str, limits: SandboxLimits) -> str | None:
    """Why a reference solution does not pass its own tests in the sandbox (None when it does)."""
    result = run_tests(solution, tests, limits)
    return None if result.passed else f"{result.reason}: {result.message}"


class CodeTask(TaskType):
    name = "code"
    fields = ("problem",)
    answer_field = "solution"
    metric_names = ("pass_at_1", "syntax_valid_rate", "parse_failures")
    default_primary_metric = "pass_at_1"
    default_prompt_template = (
        "Write the Python function below. Reply with the complete function in one ```python code block.\n\n{problem}"
    )
    default_max_new_tokens = 256
    allowed_params = frozenset({"difficulty_mix", "timeout_s", "memory_mb"})
    source_schemas = ("fields",)
    limits = SandboxLimits(
        wall_seconds=DEFAULT_TIMEOUT_S, cpu_seconds=math.ceil(DEFAULT_TIMEOUT_S), memory_bytes=DEFAULT_MEMORY_MB << 20
    )

    def configure(self) -> None:
        timeout = float(self.params.get("timeout_s", DEFAULT_TIMEOUT_S))
        memory_mb = int(self.params.get("memory_mb", DEFAULT_MEMORY_MB))
        self.limits = SandboxLimits(wall_seconds=timeout, cpu_seconds=math.ceil(timeout), memory_bytes=memory_mb << 20)

    def validate_params(self, params: dict[str, Any]) -> list[str]:
        problems = super().validate_params(params)
        timeout = params.get("timeout_s", DEFAULT_TIMEOUT_S)
        if not isinstance(timeout, Real) or isinstance(timeout, bool) or not 0 < timeout <= 60:
            problems.append(f"timeout_s must be a number of seconds in (0, 60], got {timeout!r}")
        memory_mb = params.get("memory_mb", DEFAULT_MEMORY_MB)
        if not isinstance(memory_mb, int) or isinstance(memory_mb, bool) or not 64 <= memory_mb <= 16384:
            problems.append(f"memory_mb must be a whole number of MiB from 64 to 16384, got {memory_mb!r}")
        if "difficulty_mix" not in params:
            return problems
        if not self.synthetic:
            return [*problems, "difficulty_mix steers the synthetic generator; a task with a source takes its rows"]
        mix = params["difficulty_mix"]
        if not isinstance(mix, dict) or not mix:
            problems.append(f"difficulty_mix must map levels from {list(LEVELS)} to weights, got {mix!r}")
        elif unknown := sorted(set(mix) - set(LEVELS)):
            problems.append(f"difficulty_mix has unknown level(s) {unknown}; allowed: {list(LEVELS)}")
        elif not all(isinstance(w, Real) and not isinstance(w, bool) and w >= 0 for w in mix.values()):
            problems.append(f"difficulty_mix weights must be non-negative numbers, got {mix!r}")
        elif sum(mix.values()) <= 0:
            problems.append("difficulty_mix weights must add up to more than 0")
        return problems

    def generate(self, count: int, rng: random.Random, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.check_params(params)
        mix = params.get("difficulty_mix", DEFAULT_DIFFICULTY_MIX)
        weights = [mix.get(level, 0) for level in LEVELS]
        records = []
        for _ in range(count):
            level = rng.choices(LEVELS, weights=weights)[0]
            records.append(self._record(level, rng.choice(TEMPLATES[level]), rng))
        return records

    @staticmethod
    def _record(level: str, template: Callable[[random.Random], Problem], rng: random.Random) -> dict[str, Any]:
        """A problem of ``template`` with distinct test cases, at least one of which its wrong solution fails."""
        while True:
            problem = template(rng)
            reference = _defined(problem.source(problem.body), problem.name)
            wrong = _defined(problem.source(problem.wrong), problem.name)
            cases = list({repr(args): args for args in problem.cases}.values())
            outcomes = [_outcome(reference, args) for args in cases]
            cases = [args for args, outcome in zip(cases, outcomes) if not isinstance(outcome, Exception)]
            outcomes = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
            telling = [
                index for index, args in enumerate(cases) if repr(_outcome(wrong, args)) != repr(outcomes[index])
            ]
            if telling and len(cases) >= TESTS_PER_PROBLEM:
                break
        chosen = list(range(TESTS_PER_PROBLEM))
        if not set(chosen) & set(telling):
            chosen[-1] = telling[0]
        tests = "\n".join(f"assert {_call(problem.name, cases[i])} == {outcomes[i]!r}" for i in chosen)
        example = f"{_call(problem.name, cases[chosen[0]])} == {outcomes[chosen[0]]!r}"
        statement = f'def {problem.name}({problem.params}) -> {problem.returns}:\n    """{problem.summary}\n\n'
        return {
            "problem": f'{statement}    Example: {example}\n    """',
            "solution": problem.source(problem.body).strip(),
            "tests": tests,
            "wrong_solution": problem.source(problem.wrong).strip(),
            "difficulty": level,
            "template": template.__name__.lstrip("_"),
        }

    def reference(self, record: dict[str, Any]) -> str:
        solution = (record.get("solution") or "").strip()
        return f"```python\n{solution}\n```" if solution else ""

    def parse(self, text: str, record: dict[str, Any]) -> str | None:
        return extract_code(text)

    def score(self, records: list[dict[str, Any]], predictions: list[str]) -> Scored:
        parsed = [self.parse(text, record) for record, text in zip(records, predictions, strict=True)]
        if not records:
            return Scored(zero_metrics(self.metric_names), [])
        jobs = [(code, record["tests"]) for code, record in zip(parsed, records) if code is not None]
        results = iter(run_many(jobs, self.limits, workers=WORKERS))
        per_example = []
        for code in parsed:
            if code is None:
                verdict = {"correct": 0.0, "syntax_valid_rate": 0.0, "reason": "no_code", "message": "no code found"}
            else:
                result = next(results)
                verdict = {
                    "correct": float(result.passed),
                    "syntax_valid_rate": float(result.reason != "syntax_error"),
                    "reason": result.reason,
                    "message": result.message,
                }
            per_example.append({"parsed": code, **verdict})
        metrics = {
            "pass_at_1": fmean(example["correct"] for example in per_example),
            "syntax_valid_rate": fmean(example["syntax_valid_rate"] for example in per_example),
            "parse_failures": float(parsed.count(None)),
        }
        return Scored(metrics, per_example)

    def rejected(self, record: dict[str, Any], rng: random.Random) -> str:
        """The generator's wrong solution; for the user's rows, the reference with its last ``return`` giving None."""
        if wrong := record.get("wrong_solution"):
            return f"```python\n{wrong}\n```"
        lines = (record.get("solution") or "").strip().splitlines()
        returns = [index for index, line in enumerate(lines) if line.strip().startswith("return ")]
        if returns and lines[returns[-1]].strip() != "return None":
            line = lines[returns[-1]]
            lines[returns[-1]] = line[: len(line) - len(line.lstrip())] + "return None"
            return "```python\n" + "\n".join(lines) + "\n```"
        return "```python\npass\n```"

    def record_from_source(self, row: dict[str, Any], schema: str, origin: str) -> dict[str, Any]:
        """A ``fields`` row's ``prompt``, ``solution`` (fenced or not) and ``tests``."""
        solution = extract_code(source_text(row, "solution", origin))
        return {
            "problem": source_text(row, "prompt", origin),
            "solution": solution or "",
            "tests": source_text(row, "tests", origin),
        }

    def validate_record(self, record: dict[str, Any]) -> list[str]:
        """Missing fields; and, for a record the generator did not make, a reference solution that does not pass
        its own tests in the sandbox (run once per solution and tests in a process)."""
        problems = [
            f"field {name!r} is missing or empty"
            for name in ("problem", "solution", "tests")
            if not isinstance(record.get(name), str) or not record[name].strip()
        ]
        if problems or record.get("template") in TEMPLATE_NAMES:
            return problems
        if failure := reference_failure(record["solution"], record["tests"], self.limits):
            problems.append(f"the reference solution does not pass its own tests ({failure})")
        return problems
