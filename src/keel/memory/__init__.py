"""Memory: the short-term window kept inside a token budget, and long-term stores searched by meaning.

Long-term memory (`MemoryStore`) has two stores: `SqliteVecStore` (embedded, the default) and
`PgVectorStore` (PostgreSQL with pgvector). Their heavy dependencies (apsw, sqlite-vec, onnxruntime,
psycopg) load only when a store or an embedder is created: ``pip install 'keel[memory]'``.
"""

from ._agent import AgentMemory
from .embeddings import MiniLMEmbedder, OpenAIEmbedder, resolve_embedder
from .long_term import Embedder, Hit, Memory, MemoryNotFound, MemoryStore, Namespace, Source, UnknownNamespace
from .pgvector import PgVectorStore
from .short_term import ShortTermMemory, Window
from .sqlite_vec import SqliteVecStore

__all__ = [
    "AgentMemory",
    "Embedder",
    "Hit",
    "Memory",
    "MemoryNotFound",
    "MemoryStore",
    "MiniLMEmbedder",
    "Namespace",
    "OpenAIEmbedder",
    "PgVectorStore",
    "ShortTermMemory",
    "Source",
    "SqliteVecStore",
    "UnknownNamespace",
    "Window",
    "resolve_embedder",
]
