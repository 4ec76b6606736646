"""Names of DuckDB column types that several modules test a type against.

This module imports nothing, so the configuration checks can use it without
loading DuckDB.
"""

INTEGER_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
)
"""DuckDB's integer types, signed and unsigned."""
