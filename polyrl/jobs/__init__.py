"""Jobs: work that trains, loads or drives agents end to end (dataset recipes, reference measurement).

They sit above the agent (:mod:`polyrl.agent`) in the layers (docs: architecture), so the storage,
network and training packages below never import them.
"""
