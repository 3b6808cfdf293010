"""The eval harness: gold questions, metrics, reports and the quality gate."""
