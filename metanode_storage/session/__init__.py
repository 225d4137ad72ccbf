"""QLOCK sessions: unlock a node's keystore once, for later commands of the same user.

``session start`` hands the passphrase to a small agent process (``agent.py``) that keeps
it in memory, behind a Unix socket only its user can reach (mode 0600 in a 0700
directory, and the peer's uid checked), as ssh-agent and gpg-agent do. Commands ask the
agent (``client.py``) for the keystore's Argon2id output instead of deriving it again: a
command that used to pay about 0.5 s and 64 MiB for the unlock pays a socket round trip.
The agent exits at the session's deadline or at ``session end``, zeroing what it held;
nothing unlocked is ever written to disk.
"""
