"""Cold-start phase metrics: the pod that publishes them, its role and its chart."""
