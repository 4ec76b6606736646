"""Tests of `Catalog.transaction` on a real catalog file."""

from __future__ import annotations

import logging

import duckdb
import pytest

from appliance.storage import Catalog


def _make_table(catalog: Catalog) -> None:
    catalog.db.execute("CREATE TABLE keys (k INTEGER PRIMARY KEY)")


def _keys(catalog: Catalog) -> list[int]:
    """Return the committed keys, as another cursor of the connection reads them."""
    other = catalog.db.cursor()
    try:
        return [k for (k,) in other.execute("SELECT k FROM keys ORDER BY k").fetchall()]
    finally:
        other.close()


def _assert_no_transaction(catalog: Catalog) -> None:
    """Fail unless a new transaction can begin, so none is left open."""
    with catalog.transaction():
        pass


def test_transaction_commits_block(catalog: Catalog) -> None:
    _make_table(catalog)
    with catalog.transaction():
        catalog.db.execute("INSERT INTO keys VALUES (1), (2)")
        assert _keys(catalog) == []
    assert _keys(catalog) == [1, 2]


@pytest.mark.parametrize("error", [ValueError("bad row"), KeyboardInterrupt()])
def test_transaction_error_rolls_back(catalog: Catalog, error: BaseException) -> None:
    _make_table(catalog)
    with pytest.raises(type(error)) as raised:
        with catalog.transaction():
            catalog.db.execute("INSERT INTO keys VALUES (1)")
            raise error
    assert raised.value is error
    assert _keys(catalog) == []
    _assert_no_transaction(catalog)


def test_transaction_statement_error_rolls_back(catalog: Catalog) -> None:
    _make_table(catalog)
    catalog.db.execute("INSERT INTO keys VALUES (1)")
    with pytest.raises(duckdb.ConstraintException, match="Duplicate key"):
        with catalog.transaction():
            catalog.db.execute("INSERT INTO keys VALUES (2)")
            catalog.db.execute("INSERT INTO keys VALUES (1)")
    assert _keys(catalog) == [1]
    _assert_no_transaction(catalog)


def test_transaction_commit_conflict_raises_it(catalog: Catalog) -> None:
    """A conflict found at COMMIT is raised, not the ROLLBACK that follows it."""
    _make_table(catalog)
    other = catalog.db.cursor()
    with pytest.raises(duckdb.TransactionException, match="Failed to commit"):
        with catalog.transaction():
            catalog.db.execute("INSERT INTO keys VALUES (1)")
            # A second writer commits the same key first.
            other.execute("INSERT INTO keys VALUES (1)")
    other.close()
    assert _keys(catalog) == [1]
    _assert_no_transaction(catalog)


def test_transaction_failed_rollback_logged(
    catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    """A ROLLBACK that fails is logged, and the block's own error is raised."""
    _make_table(catalog)
    with caplog.at_level(logging.WARNING, logger="appliance.storage._transaction"):
        with pytest.raises(ValueError, match="bad row"):
            with catalog.transaction():
                # The block ends the transaction itself, so ROLLBACK fails.
                catalog.db.execute("COMMIT")
                raise ValueError("bad row")
    assert "transaction rollback failed" in caplog.text
    assert "no transaction is active" in caplog.text
    assert "cause=ValueError: bad row" in caplog.text
