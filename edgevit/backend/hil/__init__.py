"""Hardware in the loop over a byte link: the frame format (frames.py), the stop-and-wait client
(link.py), text mode's EV lines (text_mode.py), ports and socket URLs (transport.py) and a
fault-injecting proxy for tests (fault_proxy.py). Target-neutral: any backend whose device speaks
docs/serial-protocol.md uses it."""
