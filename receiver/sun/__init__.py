"""Follow the sun: which centre is on duty, who is on call, and who hears of each incident.

`model` holds the sites, rosters, routes and policies as read from the routing file;
`schedule` answers "who, at this instant" (sans-IO, time is a parameter); `escalation`
turns incident events into notifications; `outbox` and `notifiers` deliver them.
"""
