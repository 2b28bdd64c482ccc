"""Past one machine (issue 15): the scan and scoring on a Ray cluster; nothing here is imported without --cluster."""
