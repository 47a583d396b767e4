"""Training: settings, the one loop every strategy uses, batches, steps, optimizer, losses and device.

Importing the package imports nothing heavy: `settings` and `losses` are torch-free, so a
suite can be parsed and validated without torch.
"""
