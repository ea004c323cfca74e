"""Helpers the tests share: real services started and stopped by the tests."""
