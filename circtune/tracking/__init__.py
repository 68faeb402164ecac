"""MLflow tracking: store, runs and artifacts of searches and trials."""

import os

# MLflow 3 sends usage telemetry over the network unless this is set; circtune
# runs on clusters without outside access and does not opt users in.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
