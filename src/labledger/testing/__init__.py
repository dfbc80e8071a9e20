"""Importable test support: backends, the store conformance suite, strategies.

A new backend is tested by subclassing the contract classes in
``labledger.testing.store_contract`` with a :class:`Backend` of its own.
"""
