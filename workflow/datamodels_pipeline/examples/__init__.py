"""Example training functions for the ``custom`` learner (``model.entry_point``)."""
