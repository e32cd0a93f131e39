"""What test modules share: clocks, servers, workers, waiting, strategies (no tests here)."""
