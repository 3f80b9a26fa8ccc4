"""Corpus indexing: `ember.index` fills per-model vector tables (SQLite with sqlite-vec,
Postgres with pgvector, Parquet) and keeps them right as models and texts change;
`ember.search` queries them. See `pipeline` for how a run works and `store` for the schema."""

from ember.indexing.pipeline import index
from ember.indexing.search import search
from ember.indexing.store import table_name

__all__ = ["index", "search", "table_name"]
