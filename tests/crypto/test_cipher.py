"""AES-SIV column encryption: equal values, nulls, types and wrong keys."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from appliance.crypto import ColumnCipher, encrypt_rows, encrypt_table
from appliance.errors import ColumnKeyError

KEY = bytes(range(64))


def make_cipher(key: bytes = KEY) -> ColumnCipher:
    return ColumnCipher(key, Path("/keys/column.key"))


def test_equal_values_equal_ciphertexts() -> None:
    cipher = make_cipher()
    array = pa.array(["N1", "N2", "N1", None])

    encrypted = cipher.encrypt_array(array).to_pylist()

    assert encrypted[0] == encrypted[2]
    assert encrypted[0] != encrypted[1]
    assert encrypted[3] is None
    assert "N1" not in encrypted
    assert cipher.decrypt_array(pa.array(encrypted)).to_pylist() == [
        "N1",
        "N2",
        "N1",
        None,
    ]


def test_same_key_same_ciphertext_across_ciphers() -> None:
    assert make_cipher().encrypt_text("N1") == make_cipher().encrypt_text("N1")
    assert make_cipher().key_id == make_cipher().key_id


def test_numbers_encrypted_as_their_text() -> None:
    cipher = make_cipher()

    numbers = cipher.encrypt_array(pa.array([7, None, 12])).to_pylist()
    flags = cipher.encrypt_array(pa.array([True, False])).to_pylist()

    assert numbers == [cipher.encrypt_text("7"), None, cipher.encrypt_text("12")]
    assert flags == [cipher.encrypt_text("true"), cipher.encrypt_text("false")]
    assert cipher.encrypt_value(7) == cipher.encrypt_text("7")
    assert cipher.encrypt_value(None) is None


def test_other_key_fails_to_decrypt() -> None:
    token = make_cipher().encrypt_text("N1")
    other = make_cipher(bytes(reversed(KEY)))

    with pytest.raises(ColumnKeyError, match="does not decrypt with the column key"):
        other.decrypt_text(token)
    with pytest.raises(ColumnKeyError, match="does not decrypt"):
        other.decrypt_text("plain text")


def test_key_of_wrong_length_rejected() -> None:
    with pytest.raises(ColumnKeyError, match="has 16 bytes"):
        make_cipher(bytes(16))


def test_rows_and_tables_encrypt_named_columns() -> None:
    cipher = make_cipher()
    rows = [{"tailnum": "N1", "distance": 5}, {"distance": 6}, [1, 2]]
    table = pa.table({"tailnum": [1, 2], "distance": [5, 6]})

    encrypted_rows = encrypt_rows(rows, {"tailnum"}, cipher)
    encrypted_table = encrypt_table(table, {"tailnum"}, cipher)

    assert encrypted_rows[0] == {"tailnum": cipher.encrypt_text("N1"), "distance": 5}
    assert encrypted_rows[1:] == rows[1:]
    assert rows[0]["tailnum"] == "N1"
    assert encrypted_table.column("tailnum").to_pylist() == [
        cipher.encrypt_text("1"),
        cipher.encrypt_text("2"),
    ]
    assert encrypted_table.column("distance").to_pylist() == [5, 6]
