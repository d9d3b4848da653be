"""All I/O of casework: recording to SQL, the outbox, (later) delivery channels."""
