"""The BPR engine: numpy and torch only, never Qt."""
