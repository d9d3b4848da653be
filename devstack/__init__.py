"""`casework dev`: the whole stack on one machine (Temporal dev server and UI, worker, API, mail
sink), and demo data for it."""
