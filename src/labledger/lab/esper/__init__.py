"""Esper: morphogenetic training — Tolaria, Kasmina, Tamiyo, Urza — and Simic policy training."""
