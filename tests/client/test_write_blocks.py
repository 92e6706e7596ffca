"""The flows' one-exchange content limit relies on the pump's write block being larger."""

from __future__ import annotations

from mailsdk.client._pump import WRITE_BLOCK
from mailsdk.flows import _delivery
from mailsdk.flows.transaction import _ONE_EXCHANGE as TRANSACTION_ONE_EXCHANGE


def test_small_content_and_its_end_are_written_together() -> None:
    # deliver_many puts content up to _ONE_EXCHANGE and its end-of-data in one exchange and
    # treats both as written at once: the pump must not write before its end-of-data
    # (3 bytes) and any dot-stuffing growth are buffered too.
    assert _delivery._ONE_EXCHANGE * 2 <= WRITE_BLOCK


def test_small_content_of_one_transaction_and_its_end_are_written_together() -> None:
    # The one-message transaction does the same (its DeliveryUnknown covers that exchange).
    assert TRANSACTION_ONE_EXCHANGE * 2 <= WRITE_BLOCK
