"""Deterministic authenticated encryption of column values with AES-SIV.

AES-SIV (RFC 5297) derives its nonce from the key and the plaintext, so equal
values give equal ciphertexts under one key. Joins, group-bys and key lookups
then work on ciphertext, at the cost of revealing which stored values are
equal (see docs/architecture.md). A value is encrypted as its text (see
`plaintext_of`) with no associated data, so equal values in two columns or
two datasets also match. A ciphertext is stored as URL-safe base64 text
without padding: 16 bytes of tag plus the plaintext's UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from appliance.errors import ColumnKeyError

_KEY_ID_LABEL = b"edge-appliance column key id\0"
_CACHE_LIMIT = 100_000
"""Ciphertexts kept by plaintext; a cache is emptied when it grows past it."""


def plaintext_of(value: Any) -> str:
    """Return the text a value is encrypted as, the same as DuckDB's VARCHAR cast.

    A string is itself, a boolean ``true`` or ``false``, and a number its
    decimal text, so a key sent as JSON matches the key stored from a file.
    NOTE: Dates and times print otherwise in Python than in DuckDB, so such
    a key sent in a request matches no stored ciphertext.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class ColumnCipher:
    """Encrypts and decrypts column values under one AES-SIV key.

    Args:
        key: 32, 48 or 64 bytes (AES-128, AES-192 or AES-256 in SIV mode).
        source: The key file, named in error messages.
    """

    def __init__(self, key: bytes, source: Path) -> None:
        if len(key) not in (32, 48, 64):
            raise ColumnKeyError(
                f"column key {source} has {len(key)} bytes; an AES-SIV key has "
                "32, 48 or 64 bytes, so restore the right key file"
            )
        self._siv = AESSIV(key)
        self.source = source
        self.key_id = hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:16]
        """Fingerprint of the key, stored with each version it encrypted."""
        self.created = False
        """Whether this process generated the key file, because the home had none."""
        self._cache: dict[str, str] = {}
        # Made here, not at import: pa.array runs pyarrow's pandas probe,
        # which the daemon skips before it (see `appliance.pandas_probe`).
        empty = pa.array([], pa.string())
        self._known: tuple[pa.Array, pa.Array] = (empty, empty)
        """Plaintexts encrypted by `encrypt_array` and their ciphertexts, at
        the same positions. DuckDB may call it from several threads, so the
        pair is replaced as a whole, never changed in place."""

    def encrypt_text(self, text: str) -> str:
        """Return the ciphertext of `text` as base64 text."""
        token = self._cache.get(text)
        if token is None:
            sealed = self._siv.encrypt(text.encode("utf-8"), None)
            token = base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[text] = token
        return token

    def decrypt_text(self, token: str) -> str:
        """Return the plaintext of a ciphertext made by `encrypt_text`.

        Raises:
            ColumnKeyError: `token` is not a ciphertext of this key.
        """
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            return self._siv.decrypt(sealed, None).decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError, UnicodeDecodeError):
            raise ColumnKeyError(
                f"a stored value does not decrypt with the column key "
                f"{self.source} (key id {self.key_id}); the value was encrypted "
                "with another key or is not a ciphertext, so restore the key "
                "file that encrypted it"
            ) from None

    def encrypt_value(self, value: Any) -> Any:
        """Return the ciphertext of a JSON value; None stays None."""
        return None if value is None else self.encrypt_text(plaintext_of(value))

    def encrypt_array(self, array: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Return the ciphertexts of a column, encrypting each distinct value once.

        Values are looked up among those encrypted before in Arrow's compute
        functions, so a column of known values costs no Python call per value.
        Nulls stay null. A column of another type than text is encrypted as
        the text of its values (`plaintext_of`).
        """
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if not pa.types.is_string(array.type):
            array = self._map_distinct(array, lambda text: text)
        plain, sealed = self._known
        positions = pc.index_in(array, value_set=plain)
        new = pc.and_(pc.is_null(positions), pc.is_valid(array))
        if pc.any(new).as_py():
            added = pc.unique(pc.filter(array, new))
            tokens = pa.array([self.encrypt_text(t) for t in added.to_pylist()])
            if len(plain) + len(added) > _CACHE_LIMIT:
                plain, sealed = plain.slice(0, 0), sealed.slice(0, 0)
            plain = pa.concat_arrays([plain, added])
            sealed = pa.concat_arrays([sealed, tokens.cast(pa.string())])
            self._known = (plain, sealed)
            positions = pc.index_in(array, value_set=plain)
        return pc.take(sealed, positions)

    def decrypt_array(self, array: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Return the plaintexts of a column of ciphertexts; nulls stay null.

        Raises:
            ColumnKeyError: A value does not decrypt with this key.
        """
        return self._map_distinct(array, self.decrypt_text)

    @staticmethod
    def _map_distinct(array: pa.Array | pa.ChunkedArray, convert: Any) -> pa.Array:
        """Return `convert` of each value's text, called once per distinct value."""
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        encoded = pc.dictionary_encode(array)
        distinct = encoded.dictionary.to_pylist()
        converted = pa.array([convert(plaintext_of(v)) for v in distinct], pa.string())
        return pc.take(converted, encoded.indices)
