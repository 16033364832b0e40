"""The wire transport: a fault server on loopback serving a scenario's endpoints over real sockets.

``server`` accepts the connections and reads each request; ``faults`` writes
what a step serves (an answer, a reset, a stall, a broken body) on the
socket; ``redirect`` sends a declared host's name and connections there at
connect time; ``tls`` is the session's throwaway certificate authority.
"""
