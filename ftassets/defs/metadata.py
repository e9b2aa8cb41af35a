"""Metadata that reads well in the Dagster UI: DataFrames as sortable table metadata."""

import math

import dagster as dg
import pandas as pd

_COLUMN_TYPES = {"b": "bool", "i": "int", "u": "int", "f": "float"}


def table_metadata(frame: pd.DataFrame) -> dg.TableMetadataValue:
    """``frame`` as a UI table: typed columns, floats rounded to 4 places, missing values left empty."""
    columns = [dg.TableColumn(str(name), _COLUMN_TYPES.get(frame[name].dtype.kind, "string")) for name in frame.columns]
    records = [dg.TableRecord({str(k): _cell(v) for k, v in row.items()}) for row in frame.to_dict(orient="records")]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns=columns))


def _cell(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (bool, int, str)):
        return value
    if hasattr(value, "item"):
        return _cell(value.item())
    return str(value)
