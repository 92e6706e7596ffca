"""Configuration and logging: NaN timeouts refused, server text cannot forge wire log lines."""

from __future__ import annotations

import pytest

from mailsdk import ConfigurationError, Timeouts


@pytest.mark.parametrize("field", ["connect", "command", "data", "data_rate"])
def test_nan_timeouts_are_refused(field: str) -> None:
    with pytest.raises(ConfigurationError):
        Timeouts(**{field: float("nan")})


def test_server_text_cannot_forge_wire_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    from mailsdk.client._pump import _printable

    assert _printable(b"hello\r\nS: 250 forged") == "hello\\r\\nS: 250 forged"
    assert _printable("café".encode()) == "café"
    assert "\x1b" not in _printable(b"\x1b[31mred")
