"""D-REAM: evolutionary tuning of workload genomes, measured in regimes, recorded in the log.

``config`` loads ``regimes.yaml``/``caps.yaml``; ``workloads/`` holds the
shipped workload scripts; ``sensors`` reads power and temperature; ``evolve``
and ``state`` are the pure decision logic; ``measure`` and ``runner`` are the
I/O around it; ``report`` reads the read models back; ``promote`` signs the
promotion of a candidate that improved.
"""
