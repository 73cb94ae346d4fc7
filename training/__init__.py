"""Training side: data sets, training loops per method, fitting, evaluation, CLI commands."""
