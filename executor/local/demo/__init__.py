"""``remote-executor demo``: the whole path on one machine, with a real recipe."""
