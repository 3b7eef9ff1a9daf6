"""Speech emotion recognition: classifier, protocols, metrics."""
