"""The packaged device profiles (`*.yaml`): payload formats mapped onto the wire contract."""
