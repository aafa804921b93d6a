"""Consuming queues with Python handlers.

    envelope.py   the wire format (JSON envelope), fast encode/decode
    bodies.py     typed bodies: dataclass / TypedDict / dict / msgspec / pydantic <-> JSON
    handlers.py   @handler marks functions; HandlerRegistry collects them per consumer
    versions.py   body versions and @upcaster: old messages upgraded before their handler sees them
    worker.py     the loop: priority intake, N workers, batched acks, leases, limits, drain
    outcomes.py   acks, retries, the failure queue, releases (all shielded)
    retry.py      the retry policy and the failure headers
    limits.py     message / time / memory / failure limits
    statistics.py counters and the stop summary
    send.py       send / send_batch / Sender
    service.py    consumers under `asyncsup run`: inline, or as supervised programs
    wiring.py     config names -> open transports, handler modules -> registry
    commands.py   `asyncsup send` and `consume`;  admin.py: `stats` and `failed`
    check.py      `asyncsup queue check`: would the queued messages decode with this code?
"""
