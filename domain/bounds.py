"""How much a case's live state may hold, whatever the case's age.

A case workflow lives for years, and everything it holds is carried across
continue-as-new and rides in its queries. So the state keeps only what decisions
and timers need; the SQL record keeps the whole story (every event, note, answered
referral and finished follow-up). These numbers are the bounds, in one place.
"""

from __future__ import annotations

# Open work a case may have at once. Past these, the case manager closes some first:
# a case with 25 unanswered referrals needs attention, not a 26th.
MAX_OPEN_REFERRALS = 25
MAX_SCHEDULED_FOLLOW_UPS = 25

# Finished things the live state keeps for a while (the newest), so a second answer to a
# referral just answered is told "already accepted" rather than "no such referral".
KEEP_FINISHED_REFERRALS = 10
KEEP_FINISHED_FOLLOW_UPS = 10
KEEP_FAILED_DELIVERIES = 10

# Idempotency keys of recent staff commands the workflow remembers (across continue-as-new):
# a command retried with its key within this many later commands is answered, never re-applied.
RECENT_COMMAND_KEYS = 100

# Events applied but not yet written to the SQL record (bytes of their JSON). Past this the
# record store is behind (down, or staff writing faster than it records) and the case refuses
# new commands until it catches up, rather than grow; they are carried over a continue-as-new.
MAX_UNRECORDED_BYTES = 24_000

# One recording activity's input (the live case and a batch of events) stays under this
# (it always carries at least one event: a command is at most a few KB). The program snapshot
# rides beside them, not counted in the cut (counting it would change how a batch is cut, and
# so the commands a running case replays: a change behind a patch); MAX_PROGRAM_BYTES keeps
# it inside the 2 KB between this and the 16 KB an activity input may take.
RECORD_INPUT_BYTES = 14_000

# A program as a case carries it (its JSON): with every recording, in every continue-as-new.
# The programs shipped take 0.6-0.9 KB; a program file past this is refused when it is loaded
# (domain/policy.py), never when a running case carries one.
MAX_PROGRAM_BYTES = 2_000

# A failing delivery's last error, as the case carries it (the record keeps the attempt's whole text).
MAX_ERROR_CHARS = 500
