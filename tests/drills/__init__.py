"""Fault drills (``make drills``): the real stack started per drill, broken on purpose, judged."""
