"""Running a scenario: one Prefect server per session, the flow on Prefect's real engine.

``session`` runs a flow and records an ``Outcome``; ``transport`` serves each
endpoint's faults (respx); ``states`` records what the engine reports;
``clock`` is the virtual clock; ``hooks`` holds every patch of Prefect and
httpx, each undone; ``guard`` refuses the network; ``server`` starts the API.
"""
