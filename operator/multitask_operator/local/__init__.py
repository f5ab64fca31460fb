"""`mtm run`: the operator's pipeline on one machine, as local processes instead of Jobs.

The same trainer entry point, the same planner and the same workspace layout as on a cluster;
`steps` decides what runs, `process` runs one trainer step and streams its progress, `display`
shows it, `report` writes WORKSPACE/report/.
"""
