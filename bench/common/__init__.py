"""What every stage shares and no stage owns: atomic file writes and the one markdown table writer."""
