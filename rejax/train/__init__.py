"""Training: optimizer and schedule, train state, the jitted step (+ GradCache), checkpoints, the loop."""
