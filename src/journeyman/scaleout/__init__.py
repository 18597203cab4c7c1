"""Many workers: what a deployment with PostgreSQL and NATS JetStream adds to one process.

One process (``journeyman serve`` on SQLite or PostgreSQL, :mod:`journeyman.runtime`)
ingests, runs the engine, fires timers and delivers by itself. With ``--bus``, the API
process publishes each event to a JetStream stream partitioned by profile id instead
(:mod:`.front`), and any number of ``journeyman worker`` processes (:mod:`.work`) each own
a fair share of the partitions (:mod:`.partitions`), run the same engine on them in order
(:mod:`.worker`), claim due timers and relay send outcomes through the bus (:mod:`.bus`).

This package is the only one that speaks to NATS; it reaches the database only through
the scale-out port of :mod:`journeyman.storage`.
"""
