"""Node: the trio I/O shell around protocol/ and wallet/."""
