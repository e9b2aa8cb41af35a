"""A terse logger for ``ftassets run``: the domain code's own messages (training step n/N with loss and ETA,
evaluation examples n/N, what is built and reused), one line each within 120 columns, without Dagster's event
stream. Dagster's console logger prints everything in full with ``--verbose``; the run log in the instance
keeps everything always."""

import logging
import sys

import dagster as dg

INDENT = " " * 11
WIDTH = 120


class _DomainMessages(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        if meta.get("dagster_event") is None and record.levelno >= logging.INFO:
            line = INDENT + str(meta.get("orig_message", record.getMessage())).splitlines()[0]
            sys.stdout.write((line if len(line) <= WIDTH else line[: WIDTH - 1] + "…") + "\n")
            sys.stdout.flush()


@dg.logger(description="Prints the steps' own progress messages, one indented line each; no Dagster events.")
def progress_logger(init_context) -> logging.Logger:
    logger = logging.Logger("ftassets.progress", level=logging.INFO)
    logger.addHandler(_DomainMessages())
    return logger
