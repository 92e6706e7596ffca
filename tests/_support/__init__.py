"""Test helpers shared by the mailsdk test suite (not collected by pytest)."""
