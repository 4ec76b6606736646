"""Encryption of sensitive dataset columns at rest (AES-SIV, deterministic)."""

from appliance.crypto._cipher import ColumnCipher, plaintext_of
from appliance.crypto._keys import (
    KEY_FILE,
    column_cipher,
    discard_created_key,
    load_key_file,
)
from appliance.crypto._rows import encrypt_rows, encrypt_table

__all__ = [
    "KEY_FILE",
    "ColumnCipher",
    "column_cipher",
    "discard_created_key",
    "encrypt_rows",
    "encrypt_table",
    "load_key_file",
    "plaintext_of",
]
