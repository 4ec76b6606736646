"""Erasure of a data subject's rows from every place the appliance stores them."""

from appliance.erasure._erase import DERIVED_NOTE, erase
from appliance.erasure._receipts import Receipt, list_receipts
from appliance.erasure._subject import Subject, parse_subject, subject_from_keys

__all__ = [
    "DERIVED_NOTE",
    "Receipt",
    "Subject",
    "erase",
    "list_receipts",
    "parse_subject",
    "subject_from_keys",
]
