"""explain-batch: explain a whole archive, locally or on a Ray cluster, resumably.

Example:
    >>> from thyrocam.batch import explain_batch
    >>> summary = explain_batch("runs/demo", "ddti/", out="cams/")  # doctest: +SKIP
    >>> import pyarrow.parquet as pq; pq.read_table(summary.index).num_rows  # doctest: +SKIP
"""

from thyrocam.batch.engine import BatchExplainer, ItemResult, weights_sha256
from thyrocam.batch.items import Item, load_items, parse_shard, select_shard
from thyrocam.batch.job import BatchSummary, explain_batch
from thyrocam.batch.store import INDEX, INDEX_SCHEMA, ResultStore

__all__ = [
    "INDEX",
    "INDEX_SCHEMA",
    "BatchExplainer",
    "BatchSummary",
    "Item",
    "ItemResult",
    "ResultStore",
    "explain_batch",
    "load_items",
    "parse_shard",
    "select_shard",
    "weights_sha256",
]
