"""HTTP: the transport, reading an answer, retry hints and the retry policy."""
