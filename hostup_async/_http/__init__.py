"""HTTP: the transport, one read of each answer, errors from answers, wait hints, retries.

``transport`` sends; ``answer`` reads each answer once into an ``Outcome``; ``errors``
builds the HostUp error for an answer that is one; ``hints`` reads the server's wait
hints; ``retry`` holds the backoff, the retry budget and which statuses are retried.
"""
