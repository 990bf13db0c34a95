"""Decide, write and send the one reply per series version: never answer loops, the report, the outbox."""
