"""The lab: producers of events (D-REAM, ToolGen with RepairLab, Esper)."""
