"""The ``mbold_tabletop`` RLDS dataset (random-policy episodes of the tabletop tasks)."""
